//! The CUDA side that can be checked without a GPU: every kernel file compiles with NVRTC for
//! sm_80 and sm_90 wherever libnvrtc loads (CI installs it from the Python package registry),
//! compile errors name the file and line, and asking for CUDA without a GPU is a clear error.
use coatt::backend::cuda::{
    compile_kernel_file, kernel_names, nvrtc_available, nvrtc_version, probe, KERNEL_SOURCES,
};
use coatt::cli::{select_device, DeviceArg};
use coatt::Device;

fn require_cuda() -> bool {
    std::env::var("COATT_REQUIRE_CUDA").is_ok_and(|v| v == "1")
}

#[test]
fn nvrtc_compiles_every_kernel_for_sm80_and_sm90() {
    assert!(
        KERNEL_SOURCES.len() >= 4,
        "kernels/*.cu embedded by build.rs"
    );
    if !nvrtc_available() {
        assert!(
            !require_cuda(),
            "COATT_REQUIRE_CUDA=1 but libnvrtc cannot be loaded"
        );
        eprintln!("SKIPPED nvrtc compile test: libnvrtc not found (install nvidia-cuda-nvrtc and add its lib folder to LD_LIBRARY_PATH)");
        return;
    }
    let (major, minor) = nvrtc_version().unwrap();
    let mut kernels = 0;
    for (file, src) in KERNEL_SOURCES {
        let names = kernel_names(src);
        assert!(!names.is_empty(), "{file} declares no kernel");
        for arch in [80, 90] {
            let ptx = compile_kernel_file(file, src, arch).unwrap_or_else(|e| panic!("{e}"));
            for n in &names {
                assert!(
                    ptx.contains(&format!(".entry {n}(")),
                    "{file}: {n} missing from the sm_{arch} PTX"
                );
            }
        }
        kernels += names.len();
    }
    let summary = format!(
        "nvrtc {major}.{minor}: {} kernel files, {kernels} kernels compiled for sm_80 and sm_90",
        KERNEL_SOURCES.len()
    );
    println!("{summary}");
    // for .ci/run, which shows it without running the test a second time with --nocapture
    let _ = std::fs::write(
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("nvrtc-summary.txt"),
        summary + "\n",
    );
}

#[test]
fn nvrtc_compile_errors_name_the_file_and_line() {
    if !nvrtc_available() {
        eprintln!("SKIPPED: libnvrtc not found");
        return;
    }
    let e = compile_kernel_file(
        "broken.cu",
        "extern \"C\" __global__ void k() {\n  int x = ;\n}\n",
        90,
    )
    .unwrap_err();
    assert!(
        e.contains("kernels/broken.cu") && e.contains("broken.cu(2)"),
        "{e}"
    );
}

#[test]
fn asking_for_cuda_without_a_gpu_is_a_one_line_error_and_auto_falls_back() {
    match probe() {
        Ok(gpu) => {
            // a GPU machine: both choices start the runtime (the no-GPU path is tested on
            // machines without one, CI's included)
            eprintln!("GPU present ({}): --device cuda and auto pick it", gpu.name);
            assert_eq!(select_device(DeviceArg::Cuda).unwrap(), Device::Cuda);
            assert_eq!(select_device(DeviceArg::Auto).unwrap(), Device::Cuda);
        }
        Err(why) => {
            assert!(!require_cuda(), "COATT_REQUIRE_CUDA=1 but no GPU: {why}");
            let e = select_device(DeviceArg::Cuda).unwrap_err().to_string();
            assert!(e.starts_with("--device cuda: ") && !e.contains('\n'), "{e}");
            assert!(e.contains(&why), "{e}");
            assert_eq!(select_device(DeviceArg::Auto).unwrap(), Device::Cpu);
        }
    }
    assert_eq!(select_device(DeviceArg::Cpu).unwrap(), Device::Cpu);
}
