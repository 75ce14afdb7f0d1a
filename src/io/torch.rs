//! Reads PyTorch `torch.save` state dicts natively: the zip format (torch ≥ 1.6: `*/data.pkl`
//! plus one raw file per storage) and the legacy format (a run of pickles followed by the raw
//! storages; torchvision's 2017 `vgg16-397923af.pth` is one). A small pickle machine handles
//! the opcodes `torch.save` emits and rebuilds tensors from (storage, offset, size, stride).
//!
//! A checkpoint is an untrusted file (a model zoo download), so the pickle machine executes
//! nothing: it accepts PROTO, FRAME, STOP, MARK, EMPTY_DICT / LIST / TUPLE, TUPLE, TUPLE1-3,
//! LIST, DICT, (BIN|LONG_BIN)PUT, MEMOIZE, (BIN|LONG_BIN)GET, BININT(1|2), LONG1, BINFLOAT,
//! (SHORT_)BINUNICODE, (SHORT_)BINSTRING, (SHORT_)BINBYTES, NONE, NEWTRUE / NEWFALSE, GLOBAL,
//! STACK_GLOBAL, REDUCE, NEWOBJ, BUILD, SETITEM(S), APPEND(S), BINPERSID, POP and DUP, and
//! refuses every other opcode. A "call" (REDUCE, NEWOBJ) only ever builds one of three things:
//! an empty dict (`OrderedDict`, `dict`), a tensor record (`torch._utils._rebuild_tensor(_v2)`,
//! `_rebuild_parameter`) or an inert placeholder; no other global is looked up or run. Sizes,
//! strides, offsets and storage lengths from the file are checked, without overflow, against
//! the bytes present before anything is allocated.
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use crate::Device;
use std::cell::RefCell;
use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::rc::Rc;

// Payloads of scalars we never read are kept so a Debug print shows the whole object.
#[allow(dead_code)]
#[derive(Clone, Debug)]
enum V {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    /// Shared, like lists and dicts, so a pickle that repeats a tuple through the memo cannot
    /// make its copies grow exponentially.
    Tuple(Rc<Vec<V>>),
    List(Rc<RefCell<Vec<V>>>),
    Dict(Rc<RefCell<Vec<(V, V)>>>),
    Global(String, String),
    /// A persistent id: ('storage', type, key, location, numel[, view]).
    Pers(Box<V>),
    Tensor(TensorRef),
    /// The result of calling something we do not need to understand.
    Opaque,
}

#[derive(Clone, Debug)]
struct TensorRef {
    key: String,
    dtype: String,
    offset: usize,
    size: Vec<usize>,
    stride: Vec<usize>,
}

fn err(path: &Path, m: impl std::fmt::Display) -> Error {
    Error::file(path, format!("not a readable PyTorch checkpoint: {m}"))
}

fn as_usize_vec(v: &V) -> Option<Vec<usize>> {
    match v {
        V::Tuple(t) => t
            .iter()
            .map(|x| {
                if let V::Int(i) = x {
                    usize::try_from(*i).ok()
                } else {
                    None
                }
            })
            .collect(),
        _ => None,
    }
}

fn storage_of(v: &V) -> Option<(String, String)> {
    // ('storage', <Global torch.FloatStorage>, key, location, numel, ...)
    let V::Pers(p) = v else { return None };
    let V::Tuple(t) = &**p else { return None };
    let dtype = match t.get(1)? {
        V::Global(_, name) => name.clone(),
        _ => return None,
    };
    let key = match t.get(2)? {
        V::Str(s) => s.clone(),
        _ => return None,
    };
    Some((key, dtype))
}

fn call(f: &V, args: Vec<V>) -> V {
    let V::Global(m, n) = f else { return V::Opaque };
    match (m.as_str(), n.as_str()) {
        ("collections", "OrderedDict") | ("builtins", "dict") => {
            V::Dict(Rc::new(RefCell::new(Vec::new())))
        }
        ("torch._utils", "_rebuild_tensor_v2") | ("torch._utils", "_rebuild_tensor") => {
            let (Some((key, dtype)), Some(V::Int(off)), Some(size), Some(stride)) = (
                args.first().and_then(storage_of),
                args.get(1),
                args.get(2).and_then(as_usize_vec),
                args.get(3).and_then(as_usize_vec),
            ) else {
                return V::Opaque;
            };
            V::Tensor(TensorRef {
                key,
                dtype,
                offset: *off as usize,
                size,
                stride,
            })
        }
        ("torch._utils", "_rebuild_parameter") => args.into_iter().next().unwrap_or(V::Opaque),
        _ => V::Opaque,
    }
}

/// Runs one pickle from `data[*pos..]`; returns its value and advances `pos` past STOP.
fn unpickle(data: &[u8], pos: &mut usize, path: &Path) -> Result<V> {
    let mut stack: Vec<V> = Vec::new();
    let mut marks: Vec<usize> = Vec::new();
    let mut memo: HashMap<u32, V> = HashMap::new();
    let take = |pos: &mut usize, n: usize| -> Result<&[u8]> {
        let s = data
            .get(*pos..*pos + n)
            .ok_or_else(|| err(path, "truncated pickle"))?;
        *pos += n;
        Ok(s)
    };
    let u32le = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let line = |pos: &mut usize| -> Result<String> {
        let start = *pos;
        if start >= data.len() {
            return Err(err(path, "truncated pickle"));
        }
        while *pos < data.len() && data[*pos] != b'\n' {
            *pos += 1;
        }
        let s = String::from_utf8_lossy(&data[start..*pos]).into_owned();
        *pos += 1;
        Ok(s)
    };
    let pop_mark = |stack: &mut Vec<V>, marks: &mut Vec<usize>| -> Result<Vec<V>> {
        let m = marks
            .pop()
            .ok_or_else(|| err(path, "pickle MARK missing"))?;
        if m > stack.len() {
            return Err(err(path, "pickle MARK below the stack"));
        }
        Ok(stack.split_off(m))
    };
    macro_rules! pop {
        () => {
            stack
                .pop()
                .ok_or_else(|| err(path, "pickle stack underflow"))?
        };
    }
    loop {
        let op = *take(pos, 1)?.first().unwrap();
        match op {
            0x80 => {
                take(pos, 1)?; // PROTO
            }
            0x95 => {
                take(pos, 8)?; // FRAME
            }
            b'.' => return stack.pop().ok_or_else(|| err(path, "empty pickle")),
            b'(' => marks.push(stack.len()),
            b'}' => stack.push(V::Dict(Rc::new(RefCell::new(Vec::new())))),
            b']' => stack.push(V::List(Rc::new(RefCell::new(Vec::new())))),
            b')' => stack.push(V::Tuple(Rc::new(Vec::new()))),
            b't' => {
                let items = pop_mark(&mut stack, &mut marks)?;
                stack.push(V::Tuple(Rc::new(items)));
            }
            b'l' => {
                let items = pop_mark(&mut stack, &mut marks)?;
                stack.push(V::List(Rc::new(RefCell::new(items))));
            }
            b'd' => {
                let items = pop_mark(&mut stack, &mut marks)?;
                let pairs = items
                    .chunks(2)
                    .filter(|c| c.len() == 2)
                    .map(|c| (c[0].clone(), c[1].clone()))
                    .collect();
                stack.push(V::Dict(Rc::new(RefCell::new(pairs))));
            }
            0x85..=0x87 => {
                let n = (op - 0x84) as usize;
                if stack.len() < n {
                    return Err(err(path, "pickle stack underflow"));
                }
                let items = stack.split_off(stack.len() - n);
                stack.push(V::Tuple(Rc::new(items)));
            }
            b'q' => {
                let k = take(pos, 1)?[0] as u32;
                memo.insert(k, stack.last().cloned().unwrap_or(V::None));
            }
            b'r' => {
                let k = u32le(take(pos, 4)?);
                memo.insert(k, stack.last().cloned().unwrap_or(V::None));
            }
            0x94 => {
                let k = memo.len() as u32;
                memo.insert(k, stack.last().cloned().unwrap_or(V::None));
            }
            b'h' => {
                let k = take(pos, 1)?[0] as u32;
                stack.push(
                    memo.get(&k)
                        .cloned()
                        .ok_or_else(|| err(path, "bad memo reference"))?,
                );
            }
            b'j' => {
                let k = u32le(take(pos, 4)?);
                stack.push(
                    memo.get(&k)
                        .cloned()
                        .ok_or_else(|| err(path, "bad memo reference"))?,
                );
            }
            b'J' => stack.push(V::Int(
                i32::from_le_bytes(take(pos, 4)?.try_into().unwrap()) as i64,
            )),
            b'K' => stack.push(V::Int(take(pos, 1)?[0] as i64)),
            b'M' => {
                let b = take(pos, 2)?;
                stack.push(V::Int(u16::from_le_bytes([b[0], b[1]]) as i64));
            }
            0x8a => {
                let n = take(pos, 1)?[0] as usize;
                let b = take(pos, n)?;
                let mut v: i128 = 0;
                for (i, &x) in b.iter().enumerate().take(16) {
                    v |= (x as i128) << (8 * i);
                }
                if n > 0 && n < 16 && b[n - 1] & 0x80 != 0 {
                    v -= 1i128 << (8 * n);
                }
                stack.push(V::Int(v as i64));
            }
            b'G' => stack.push(V::Float(f64::from_be_bytes(
                take(pos, 8)?.try_into().unwrap(),
            ))),
            b'X' => {
                let n = u32le(take(pos, 4)?) as usize;
                stack.push(V::Str(String::from_utf8_lossy(take(pos, n)?).into_owned()));
            }
            0x8c => {
                let n = take(pos, 1)?[0] as usize;
                stack.push(V::Str(String::from_utf8_lossy(take(pos, n)?).into_owned()));
            }
            b'T' => {
                let n = u32le(take(pos, 4)?) as usize;
                stack.push(V::Str(String::from_utf8_lossy(take(pos, n)?).into_owned()));
            }
            b'U' => {
                let n = take(pos, 1)?[0] as usize;
                stack.push(V::Str(String::from_utf8_lossy(take(pos, n)?).into_owned()));
            }
            b'B' => {
                let n = u32le(take(pos, 4)?) as usize;
                stack.push(V::Bytes(take(pos, n)?.to_vec()));
            }
            b'C' => {
                let n = take(pos, 1)?[0] as usize;
                stack.push(V::Bytes(take(pos, n)?.to_vec()));
            }
            b'N' => stack.push(V::None),
            0x88 => stack.push(V::Bool(true)),
            0x89 => stack.push(V::Bool(false)),
            b'c' => {
                let m = line(pos)?;
                let n = line(pos)?;
                stack.push(V::Global(m, n));
            }
            0x93 => {
                let n = pop!();
                let m = pop!();
                match (m, n) {
                    (V::Str(m), V::Str(n)) => stack.push(V::Global(m, n)),
                    _ => return Err(err(path, "STACK_GLOBAL without names")),
                }
            }
            b'R' | 0x81 => {
                let args = pop!();
                let f = pop!();
                let args = if let V::Tuple(a) = args {
                    a.as_ref().clone()
                } else {
                    vec![args]
                };
                stack.push(call(&f, args));
            }
            b'b' => {
                let _state = pop!(); // BUILD: object state (e.g. a state dict's _metadata)
            }
            b's' => {
                let v = pop!();
                let k = pop!();
                if let Some(V::Dict(d)) = stack.last() {
                    d.borrow_mut().push((k, v));
                }
            }
            b'u' => {
                let items = pop_mark(&mut stack, &mut marks)?;
                if let Some(V::Dict(d)) = stack.last() {
                    d.borrow_mut().extend(
                        items
                            .chunks(2)
                            .filter(|c| c.len() == 2)
                            .map(|c| (c[0].clone(), c[1].clone())),
                    );
                }
            }
            b'a' => {
                let v = pop!();
                if let Some(V::List(l)) = stack.last() {
                    l.borrow_mut().push(v);
                }
            }
            b'e' => {
                let items = pop_mark(&mut stack, &mut marks)?;
                if let Some(V::List(l)) = stack.last() {
                    l.borrow_mut().extend(items);
                }
            }
            b'Q' => {
                let pid = pop!();
                stack.push(V::Pers(Box::new(pid)));
            }
            b'0' => {
                pop!();
            }
            b'2' => {
                let top = stack
                    .last()
                    .cloned()
                    .ok_or_else(|| err(path, "DUP on empty stack"))?;
                stack.push(top);
            }
            other => {
                return Err(err(
                    path,
                    format!(
                        "unsupported pickle opcode 0x{other:02x} at byte {}",
                        *pos - 1
                    ),
                ))
            }
        }
    }
}

/// Bytes per element and a decoder of one little-endian element.
type ElemCodec = (usize, fn(&[u8]) -> f64);

fn elem(dtype: &str) -> Option<ElemCodec> {
    Some(match dtype {
        "FloatStorage" => (4, |b| f32::from_le_bytes(b.try_into().unwrap()) as f64),
        "DoubleStorage" => (8, |b| f64::from_le_bytes(b.try_into().unwrap())),
        "HalfStorage" => (2, |b| {
            crate::io::checkpoint::f16_to_f32(u16::from_le_bytes([b[0], b[1]])) as f64
        }),
        "BFloat16Storage" => (2, |b| {
            f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16) as f64
        }),
        "LongStorage" => (8, |b| i64::from_le_bytes(b.try_into().unwrap()) as f64),
        "IntStorage" => (4, |b| i32::from_le_bytes(b.try_into().unwrap()) as f64),
        _ => return None,
    })
}

/// Gathers a (possibly strided) tensor out of its storage's raw bytes, as f32.
fn materialise(t: &TensorRef, raw: &[u8], path: &Path) -> Result<Tensor> {
    let (sz, conv) =
        elem(&t.dtype).ok_or_else(|| err(path, format!("unsupported storage type {}", t.dtype)))?;
    // every size and stride comes from the file: the element count and the largest element
    // index are checked (without overflow) against the storage before anything is allocated
    let n = t
        .size
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| {
            err(
                path,
                format!("tensor {} has an impossible size {:?}", t.key, t.size),
            )
        })?;
    if t.stride.len() != t.size.len() {
        return Err(err(
            path,
            format!(
                "tensor {}: {} sizes but {} strides",
                t.key,
                t.size.len(),
                t.stride.len()
            ),
        ));
    }
    if n > 0 {
        let last = t
            .size
            .iter()
            .zip(&t.stride)
            .try_fold(t.offset, |a, (&d, &s)| {
                a.checked_add((d - 1).checked_mul(s)?)
            })
            .and_then(|e| e.checked_add(1)?.checked_mul(sz))
            .ok_or_else(|| err(path, format!("tensor {} reaches past any storage", t.key)))?;
        if last > raw.len() {
            return Err(err(
                path,
                format!("storage {} too short for tensor {:?}", t.key, t.size),
            ));
        }
    }
    let mut out = Vec::with_capacity(n);
    let mut idx = vec![0usize; t.size.len()];
    for _ in 0..n {
        let e = t.offset + idx.iter().zip(&t.stride).map(|(i, s)| i * s).sum::<usize>();
        let b = raw
            .get(e * sz..(e + 1) * sz)
            .ok_or_else(|| err(path, format!("storage {} too short", t.key)))?;
        out.push(conv(b) as f32);
        for k in (0..idx.len()).rev() {
            idx[k] += 1;
            if idx[k] < t.size[k] {
                break;
            }
            idx[k] = 0;
        }
    }
    Tensor::from_vec(out, t.size.clone(), Device::Cpu)
}

fn entries(root: &V, path: &Path) -> Result<Vec<(String, TensorRef)>> {
    entries_at(root, path, 0)
}

fn entries_at(root: &V, path: &Path, depth: usize) -> Result<Vec<(String, TensorRef)>> {
    // a dict can hold itself (through the memo): the wrappers are followed a few levels only
    if depth > 4 {
        return Err(err(path, "state dict wrappers nested too deep"));
    }
    let V::Dict(d) = root else {
        return Err(err(
            path,
            "the top-level object is not a dict (a state dict was expected)",
        ));
    };
    let d = d.borrow();
    // {"state_dict": {...}} wrappers are common too
    if let Some((_, inner @ V::Dict(_))) = d
        .iter()
        .find(|(k, _)| matches!(k, V::Str(s) if s == "state_dict" || s == "model"))
    {
        return entries_at(inner, path, depth + 1);
    }
    Ok(d.iter()
        .filter_map(|(k, v)| match (k, v) {
            (V::Str(k), V::Tensor(t)) => Some((k.clone(), t.clone())),
            _ => None,
        })
        .collect())
}

/// All tensors of a state dict, as f32 CPU tensors, in file order.
pub fn read_state_dict(path: &Path) -> Result<Vec<(String, Tensor)>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if bytes.starts_with(b"PK\x03\x04") {
        read_zip(path, &bytes)
    } else {
        read_legacy(path, &bytes)
    }
}

fn read_zip(path: &Path, bytes: &[u8]) -> Result<Vec<(String, Tensor)>> {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(|e| err(path, e))?;
    let names: Vec<String> = zip.file_names().map(String::from).collect();
    let pkl = names
        .iter()
        .find(|n| n.ends_with("/data.pkl") || *n == "data.pkl")
        .cloned()
        .ok_or_else(|| err(path, "no data.pkl in the archive"))?;
    let prefix = pkl.trim_end_matches("data.pkl").to_string();
    let mut read = |name: &str| -> Result<Vec<u8>> {
        let mut f = zip
            .by_name(name)
            .map_err(|e| err(path, format!("{name}: {e}")))?;
        let mut v = Vec::new();
        f.read_to_end(&mut v).map_err(|e| Error::io(path, e))?;
        Ok(v)
    };
    let data = read(&pkl)?;
    let root = unpickle(&data, &mut 0, path)?;
    let mut out = Vec::new();
    let mut cache: HashMap<String, Vec<u8>> = HashMap::new();
    for (name, t) in entries(&root, path)? {
        if !cache.contains_key(&t.key) {
            cache.insert(t.key.clone(), read(&format!("{prefix}data/{}", t.key))?);
        }
        out.push((name, materialise(&t, &cache[&t.key], path)?));
    }
    Ok(out)
}

fn read_legacy(path: &Path, bytes: &[u8]) -> Result<Vec<(String, Tensor)>> {
    let mut pos = 0;
    match unpickle(bytes, &mut pos, path)? {
        V::Int(m) if m as u64 == 0x1950a86a20f9469cfc6cu128 as u64 => {}
        _ => {
            return Err(err(
                path,
                "neither a zip archive nor a legacy torch.save file (bad magic number)",
            ))
        }
    }
    let _protocol = unpickle(bytes, &mut pos, path)?;
    let _sys_info = unpickle(bytes, &mut pos, path)?;
    let root = unpickle(bytes, &mut pos, path)?;
    let keys = match unpickle(bytes, &mut pos, path)? {
        V::List(l) => l
            .borrow()
            .iter()
            .map(|k| {
                if let V::Str(s) = k {
                    Ok(s.clone())
                } else {
                    Err(err(path, "bad storage key list"))
                }
            })
            .collect::<Result<Vec<_>>>()?,
        _ => return Err(err(path, "missing storage key list")),
    };
    let ents = entries(&root, path)?;
    let mut raw: HashMap<String, &[u8]> = HashMap::new();
    for key in keys {
        let n = u64::from_le_bytes(
            bytes
                .get(pos..pos + 8)
                .ok_or_else(|| err(path, "truncated storage header"))?
                .try_into()
                .unwrap(),
        ) as usize;
        pos += 8;
        let sz = ents
            .iter()
            .find(|(_, t)| t.key == key)
            .and_then(|(_, t)| elem(&t.dtype))
            .map_or(4, |e| e.0);
        let end = n
            .checked_mul(sz)
            .and_then(|len| pos.checked_add(len))
            .ok_or_else(|| err(path, format!("storage {key} has an impossible size {n}")))?;
        let data = bytes
            .get(pos..end)
            .ok_or_else(|| err(path, format!("storage {key} truncated")))?;
        pos = end;
        raw.insert(key, data);
    }
    ents.into_iter()
        .map(|(name, t)| {
            let data = raw
                .get(&t.key)
                .ok_or_else(|| err(path, format!("storage {} missing", t.key)))?;
            Ok((name, materialise(&t, data, path)?))
        })
        .collect()
}
