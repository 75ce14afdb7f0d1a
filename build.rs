//! Embeds every `kernels/*.cu` into the binary (a table of file name and source) so NVRTC can
//! compile them at run time; no CUDA toolkit is needed to build.
use std::fmt::Write;
use std::path::Path;

fn main() {
    let dir = Path::new("kernels");
    println!("cargo:rerun-if-changed=kernels");
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().to_string())
                .filter(|n| n.ends_with(".cu"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    let mut out = String::from("/// (file name, CUDA source) of every kernel file, from build.rs.\npub const KERNEL_SOURCES: &[(&str, &str)] = &[\n");
    for f in &files {
        let abs = std::fs::canonicalize(dir.join(f)).expect("kernel path");
        println!("cargo:rerun-if-changed={}", abs.display());
        writeln!(
            out,
            "    ({f:?}, include_str!({:?})),",
            abs.display().to_string()
        )
        .unwrap();
    }
    out.push_str("];\n");
    let dst = Path::new(&std::env::var("OUT_DIR").unwrap()).join("kernels.rs");
    std::fs::write(dst, out).expect("write kernels.rs");
}
