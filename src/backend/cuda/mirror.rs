//! Kernel parameter structs passed by value to a `.cu` kernel: `#[repr(C)]`, every field an
//! `i32`, declared with [`mirrored!`] so that their field names (and so their order) are
//! checked against the `.cu` declaration by [`check_mirror`] (a unit test per struct), instead
//! of positional `[i32; N]` arrays whose order only a GPU run could check.

/// Declares `struct $name { $field: i32, .. }` mirroring `struct $cu` of `kernels/$file`;
/// `from $src` adds `From<&$src>` for a host struct with the same field names (as `usize`).
macro_rules! mirrored {
    ($(#[$m:meta])* $name:ident = $file:literal :: $cu:literal { $($f:ident),* $(,)? } from $src:ty) => {
        $crate::backend::cuda::mirrored!($(#[$m])* $name = $file::$cu { $($f),* });
        impl From<&$src> for $name {
            fn from(g: &$src) -> Self {
                $name { $($f: g.$f as i32,)* }
            }
        }
    };
    ($(#[$m:meta])* $name:ident = $file:literal :: $cu:literal { $($f:ident),* $(,)? }) => {
        $(#[$m])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub(crate) struct $name {
            $(pub $f: i32,)*
        }
        impl $name {
            /// (kernel file, struct name in it, field names in order).
            #[allow(dead_code)]
            pub(crate) const MIRROR: $crate::backend::cuda::Mirror =
                ($file, $cu, &[$(stringify!($f)),*]);
        }
    };
}
pub(crate) use mirrored;

/// (kernel file, struct name in it, field names in order) of one mirrored struct.
pub(crate) type Mirror = (&'static str, &'static str, &'static [&'static str]);

/// Checks that `struct NAME { int a, b, ...; };` in the kernel file declares exactly these
/// fields in this order (all `int`, as the Rust side's `i32`).
#[cfg(test)]
pub(crate) fn check_mirror((file, name, fields): Mirror) -> Result<(), String> {
    let src = super::KERNEL_SOURCES
        .iter()
        .find(|(f, _)| *f == file)
        .ok_or_else(|| format!("no kernel file kernels/{file}"))?
        .1;
    let key = format!("struct {name} {{");
    let start = src
        .find(&key)
        .ok_or_else(|| format!("kernels/{file} declares no `{key}`"))?
        + key.len();
    let body = &src[start..start + src[start..].find("};").ok_or("unterminated struct")?];
    let mut cu = Vec::new();
    for decl in body.split(';').map(str::trim).filter(|d| !d.is_empty()) {
        let names = decl
            .strip_prefix("int ")
            .ok_or_else(|| format!("kernels/{file} {name}: `{decl}` is not an int field"))?;
        cu.extend(names.split(',').map(|n| n.trim().to_string()));
    }
    if cu != fields {
        return Err(format!(
            "kernels/{file} {name} has fields {cu:?}, the Rust mirror {fields:?}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    mirrored!(Good = "pool.cu"::"PoolGeom" { planes, h, w, kh, kw, sh, sw, ph, pw, ho, wo });
    mirrored!(Swapped = "pool.cu"::"PoolGeom" { planes, w, h, kh, kw, sh, sw, ph, pw, ho, wo });

    #[test]
    fn a_mirror_must_name_the_fields_in_the_kernels_order() {
        check_mirror(Good::MIRROR).unwrap();
        let e = check_mirror(Swapped::MIRROR).unwrap_err();
        assert!(e.contains("PoolGeom"), "{e}");
        assert!(check_mirror(("pool.cu", "NoSuch", &[])).is_err());
    }
}
