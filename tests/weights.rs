//! Weight import: PyTorch state dicts in both torch.save formats (fixtures re-created byte for
//! byte by tools/make_torch_fixtures.py), and loading the VGG backbone by name.
use coatt::io::torch::read_state_dict;
use coatt::io::{save_checkpoint, Checkpoint};
use coatt::nn::Backbone;
use coatt::nn::{Init, Vgg, VggConfig};
use coatt::{DType, Device};
use std::collections::HashMap;
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn check_fixture(name: &str) {
    let sd = read_state_dict(&fixture(name)).unwrap_or_else(|e| panic!("{e}"));
    let get = |n: &str| {
        sd.iter()
            .find(|(k, _)| k == n)
            .unwrap_or_else(|| panic!("{n} missing in {name}"))
            .1
            .clone()
    };
    let names: Vec<&str> = sd.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        [
            "features.0.weight",
            "features.0.bias",
            "head.t",
            "extra.double"
        ],
        "{name}: file order kept"
    );
    let w = get("features.0.weight");
    assert_eq!(w.dims(), &[2, 3]);
    assert_eq!(w.to_vec_f64(), vec![0.0, 0.5, 1.0, 1.5, 2.0, 2.5]);
    assert_eq!(
        get("features.0.bias").to_vec_f64(),
        vec![3.0, 3.5, 4.0],
        "offset into a shared storage"
    );
    let t = get("head.t");
    assert_eq!(t.dims(), &[3, 2]);
    assert_eq!(
        t.to_vec_f64(),
        vec![0.0, 1.5, 0.5, 2.0, 1.0, 2.5],
        "strided (transposed) view"
    );
    assert_eq!(get("extra.double").to_vec_f64(), vec![1.0, -2.0, 3.0]);
}

#[test]
fn reads_zip_format_state_dict() {
    check_fixture("torch_zip_format.pth");
}

#[test]
fn reads_legacy_format_state_dict() {
    check_fixture("torch_legacy_format.pth");
}

#[test]
fn corrupt_torch_files_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(fixture("torch_legacy_format.pth")).unwrap();
    let cut = dir.path().join("cut.pth");
    std::fs::write(&cut, &bytes[..bytes.len() - 7]).unwrap();
    let e = read_state_dict(&cut).unwrap_err().to_string();
    assert!(e.contains("cut.pth"), "{e}");
    let junk = dir.path().join("junk.pth");
    std::fs::write(&junk, b"\x80\x02K\x05.").unwrap();
    let e = read_state_dict(&junk).unwrap_err().to_string();
    assert!(e.contains("junk.pth") && e.contains("magic"), "{e}");
}

/// A VGG of `cfg` with the classifier's inits, drawn from seed `seed`.
fn vgg(cfg: VggConfig, seed: u64) -> Vgg {
    Vgg::new(
        cfg,
        Init::KaimingNormal,
        Init::TorchDefault,
        DType::F32,
        Device::Cpu,
        &mut coatt::testing::rng(seed),
    )
}

#[test]
fn backbone_loads_by_torchvision_names_and_rejects_wrong_shapes() {
    // torchvision's layout: no BN
    let cfg = VggConfig {
        batch_norm: false,
        ..VggConfig::narrow(16)
    };
    let src = vgg(cfg.clone(), 1);
    let dst = vgg(cfg.clone(), 2);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vgg.safetensors");
    let tensors: Vec<_> = src
        .named_params()
        .into_iter()
        .filter(|(n, _)| n.starts_with("features."))
        .collect();
    assert_eq!(tensors.len(), 26);
    assert_eq!(tensors[0].0, "features.0.weight");
    assert_eq!(tensors[25].0, "features.28.bias");
    save_checkpoint(&path, &tensors, &HashMap::new()).unwrap();
    assert_eq!(dst.load_pretrained(&path).unwrap(), 26);
    for ((n, a), (_, b)) in src
        .named_params()
        .iter()
        .zip(dst.named_params())
        .filter(|((n, _), _)| n.starts_with("features."))
    {
        assert_eq!(a.to_vec_f64(), b.to_vec_f64(), "{n}");
    }
    // a BN backbone takes the conv weights and keeps its own BN parameters
    let bn = vgg(VggConfig::narrow(16), 4);
    assert_eq!(bn.load_pretrained(&path).unwrap(), 26);
    // a checkpoint of a BN backbone (a pre-training run of ours) gives its BN too: γ, β and the
    // running statistics the convs were trained with
    let trained = vgg(VggConfig::narrow(16), 5);
    let all: Vec<(String, coatt::Tensor)> = trained
        .named_tensors()
        .into_iter()
        .map(|(n, t, _)| (n, t))
        .collect();
    for (k, (n, t)) in all.iter().enumerate() {
        if n.contains(".bn.") {
            let v: Vec<f32> = (0..t.numel())
                .map(|i| 0.5 + (i + k) as f32 * 0.01)
                .collect();
            t.assign(&coatt::Tensor::from_vec(v, t.dims().to_vec(), Device::Cpu).unwrap())
                .unwrap();
        }
    }
    let full = dir.path().join("pre.safetensors");
    save_checkpoint(&full, &all, &HashMap::new()).unwrap();
    let n_bn = all.iter().filter(|(n, _)| n.contains(".bn.")).count();
    assert_eq!(n_bn, 4 * 13);
    assert_eq!(bn.load_pretrained(&full).unwrap(), 26 + n_bn);
    let dst_all = bn.named_tensors();
    for ((n, a), (_, b, _)) in all.iter().zip(&dst_all) {
        if n.starts_with("features.") {
            assert_eq!(a.to_vec_f64(), b.to_vec_f64(), "{n}");
        }
    }
    // a file for a narrow model does not fit a wider one: clear error
    let wide = vgg(VggConfig::narrow(8), 3);
    let e = wide.load_pretrained(&path).unwrap_err().to_string();
    assert!(e.contains("vgg.safetensors") && e.contains("shape"), "{e}");
    assert!(Checkpoint::open(&path).is_ok());
}
