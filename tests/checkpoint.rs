//! safetensors checkpoints: round trip, atomic replacement, and clear errors for bad files.
use coatt::io::{save_checkpoint, Checkpoint};
use coatt::{DType, Device, Tensor};
use std::collections::HashMap;

fn sample() -> Vec<(String, Tensor)> {
    vec![
        (
            "conv.weight".into(),
            Tensor::from_f64(
                &[1.5, -2.0, 3.25, 4.0, 0.1, 0.2],
                [1, 2, 3],
                DType::F32,
                Device::Cpu,
            )
            .unwrap(),
        ),
        (
            "head.bias".into(),
            Tensor::from_f64(&[1e-300, -7.0], [2], DType::F64, Device::Cpu).unwrap(),
        ),
    ]
}

#[test]
fn round_trip_keeps_values_dtypes_and_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/ck.safetensors");
    let meta = HashMap::from([("epoch".to_string(), "3".to_string())]);
    save_checkpoint(&path, &sample(), &meta).unwrap();
    let ck = Checkpoint::open(&path).unwrap();
    assert_eq!(ck.names(), vec!["conv.weight", "head.bias"]);
    assert_eq!(ck.metadata().get("epoch").map(String::as_str), Some("3"));
    for (name, t) in sample() {
        let back = ck.get(&name, t.dtype(), Device::Cpu).unwrap();
        assert_eq!(back.dims(), t.dims());
        assert_eq!(back.to_vec_f64(), t.to_vec_f64(), "{name}");
    }
    // no temporary file is left beside it
    let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
}

#[test]
fn overwrite_replaces_whole_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ck.safetensors");
    save_checkpoint(&path, &sample(), &HashMap::new()).unwrap();
    let small = vec![(
        "only".to_string(),
        Tensor::ones([2], DType::F32, Device::Cpu),
    )];
    save_checkpoint(&path, &small, &HashMap::new()).unwrap();
    assert_eq!(Checkpoint::open(&path).unwrap().names(), vec!["only"]);
}

#[test]
fn truncated_corrupt_and_missing_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ck.safetensors");
    save_checkpoint(&path, &sample(), &HashMap::new()).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let cut = dir.path().join("truncated.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() - 5]).unwrap();
    let e = Checkpoint::open(&cut)
        .err()
        .expect("truncated file must not open")
        .to_string();
    assert!(e.contains("truncated.safetensors"), "{e}");
    let junk = dir.path().join("junk.safetensors");
    std::fs::write(&junk, b"definitely not safetensors").unwrap();
    let e = Checkpoint::open(&junk)
        .err()
        .expect("junk must not open")
        .to_string();
    assert!(e.contains("junk.safetensors"), "{e}");
    let e = Checkpoint::open(dir.path().join("absent.safetensors"))
        .err()
        .expect("missing file")
        .to_string();
    assert!(e.contains("absent.safetensors"), "{e}");
    let e = Checkpoint::open(&path)
        .unwrap()
        .get("no.such.tensor", DType::F32, Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("no.such.tensor") && e.contains("ck.safetensors"),
        "{e}"
    );
}

#[test]
fn the_same_tensors_and_metadata_give_the_same_bytes() {
    // the metadata map's iteration order differs between HashMaps (and processes); the file
    // must not, so that identical runs write identical checkpoints
    let dir = tempfile::tempdir().unwrap();
    let keys: Vec<(String, String)> = (0..16)
        .map(|i| (format!("key{i}"), format!("value{i}")))
        .collect();
    let forward: HashMap<String, String> = keys.iter().cloned().collect();
    let backward: HashMap<String, String> = keys.iter().rev().cloned().collect();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    save_checkpoint(&a, &sample(), &forward).unwrap();
    save_checkpoint(&b, &sample(), &backward).unwrap();
    let (ba, bb) = (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    assert_eq!(ba, bb);
    // still a valid safetensors file: 8-byte aligned header, every tensor and key readable
    let n = u64::from_le_bytes(ba[..8].try_into().unwrap()) as usize;
    assert_eq!(n % 8, 0);
    let ck = Checkpoint::open(&a).unwrap();
    assert_eq!(ck.metadata(), forward);
    for (name, t) in sample() {
        let back = ck.get(&name, t.dtype(), Device::Cpu).unwrap();
        assert_eq!(back.to_vec_f64(), t.to_vec_f64(), "{name}");
    }
}
