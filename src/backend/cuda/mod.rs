//! The CUDA side, first part: finding a driver and a GPU without panicking, and compiling the
//! kernel files (`kernels/*.cu`, embedded by build.rs) with NVRTC for a compute capability.
//! cudarc loads libcuda / libnvrtc at run time (dynamic loading), so the crate builds on any
//! machine; it panics when a library is missing, so every entry point probes first.
//! `runtime` holds the context, stream, cuBLAS handle and kernel modules; `alloc` the caching
//! allocator; `storage` the device buffer; one file per op family holds its ops, lined up with
//! `kernels/<family>.cu` and `backend/cpu/<family>.rs` (`gemm` wraps cuBLAS).
mod alloc;
mod coattention;
mod conv;
mod elementwise;
mod gemm;
mod layout;
mod loss;
mod matmul;
mod mirror;
mod norm;
mod pool;
mod reduce;
mod resize;
mod runtime;
mod sgd;
mod softmax;
mod storage;

pub use alloc::{memory_stats, MemoryStats};
pub use coattention::{coattention_impl, set_coattention_impl, CoattImpl};
pub use conv::{conv_algo, set_conv_algo, ConvAlgo};
#[cfg(test)]
pub(crate) use mirror::check_mirror;
pub(crate) use mirror::{mirrored, Mirror};
pub(crate) use runtime::{arg, rt};
pub use runtime::{device_name, init, profile_report, set_tf32, synchronize, tf32, time_ms};
pub use storage::CudaStorage;

use std::panic::{catch_unwind, AssertUnwindSafe};

include!(concat!(env!("OUT_DIR"), "/kernels.rs"));

/// What the probe found.
#[derive(Clone, Debug, PartialEq)]
pub struct GpuInfo {
    pub name: String,
    pub compute_capability: (i32, i32),
    pub memory_bytes: usize,
    pub driver_version: i32,
}

/// Runs a cudarc call that may panic (missing library or symbol) as a Result.
fn guarded<T>(what: &str, f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let r = catch_unwind(AssertUnwindSafe(f));
    std::panic::set_hook(prev);
    r.unwrap_or_else(|_| Err(format!("{what}: the CUDA library could not be loaded")))
}

/// The first GPU, or one line saying why there is none (no driver library, no device, driver
/// error).
pub fn probe() -> Result<GpuInfo, String> {
    use cudarc::driver::{result, sys};
    // SAFETY: only tries to open the library.
    if !unsafe { sys::is_culib_present() } {
        return Err("no CUDA driver on this machine (libcuda.so could not be loaded)".into());
    }
    guarded("CUDA driver", || {
        result::init().map_err(|e| format!("the CUDA driver failed to initialise ({e:?})"))?;
        let n = result::device::get_count().map_err(|e| format!("cuDeviceGetCount: {e:?}"))?;
        if n == 0 {
            return Err("the CUDA driver is present but reports no GPU".into());
        }
        let dev = result::device::get(0).map_err(|e| format!("cuDeviceGet: {e:?}"))?;
        let attr = |a| unsafe { result::device::get_attribute(dev, a) }.unwrap_or(0);
        let name = result::device::get_name(dev).unwrap_or_else(|_| "unknown GPU".into());
        let memory_bytes = unsafe { result::device::total_mem(dev) }.unwrap_or(0);
        let mut driver_version = 0;
        // SAFETY: a valid out pointer.
        unsafe { sys::cuDriverGetVersion(&mut driver_version) };
        Ok(GpuInfo {
            name,
            compute_capability: (
                attr(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR),
                attr(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR),
            ),
            memory_bytes,
            driver_version,
        })
    })
}

/// Whether libnvrtc can be loaded (from the library path; the NVRTC wheel of the Python
/// package registry works, see .ci/run).
pub fn nvrtc_available() -> bool {
    // SAFETY: only tries to open the library.
    unsafe { cudarc::nvrtc::sys::is_culib_present() }
}

/// The NVRTC version (major, minor).
pub fn nvrtc_version() -> Result<(i32, i32), String> {
    if !nvrtc_available() {
        return Err("libnvrtc could not be loaded".into());
    }
    guarded("NVRTC", || {
        let (mut a, mut b) = (0, 0);
        // SAFETY: valid out pointers.
        unsafe { cudarc::nvrtc::sys::nvrtcVersion(&mut a, &mut b) };
        Ok((a, b))
    })
}

/// Compiles one kernel file to PTX for `sm_<arch>` (e.g. 90). A compile error names the file
/// and carries NVRTC's log (which gives the line).
pub fn compile_kernel_file(file: &str, src: &str, arch: u32) -> Result<String, String> {
    if !nvrtc_available() {
        return Err("libnvrtc could not be loaded".into());
    }
    let arch_name: &'static str = match arch {
        80 => "sm_80",
        86 => "sm_86",
        89 => "sm_89",
        90 => "sm_90",
        100 => "sm_100",
        other => return Err(format!("unsupported compute capability sm_{other}")),
    };
    guarded("NVRTC", || {
        let opts = cudarc::nvrtc::CompileOptions {
            arch: Some(arch_name),
            name: Some(file.to_string()),
            options: vec!["--std=c++17".into()],
            ..Default::default()
        };
        match cudarc::nvrtc::compile_ptx_with_opts(src, opts) {
            Ok(ptx) => Ok(ptx.to_src()),
            Err(cudarc::nvrtc::CompileError::CompileError { log, .. }) => Err(format!(
                "kernels/{file} does not compile for {arch_name}:\n{}",
                log.to_string_lossy()
            )),
            Err(e) => Err(format!("kernels/{file}: NVRTC error {e:?}")),
        }
    })
}

/// Names of the `extern "C" __global__` kernels declared in a source (for reports and tests).
pub fn kernel_names(src: &str) -> Vec<String> {
    const KEY: &str = "__global__ void ";
    let mut v = Vec::new();
    for line in src.lines() {
        // a macro's body declares a kernel per use, not by itself
        if line.trim_end().ends_with('\\') {
            continue;
        }
        if let Some(i) = line.find(KEY) {
            let mut rest = line[i + KEY.len()..].trim_start();
            // `__launch_bounds__(..)` sits between `void` and the name
            if let Some(r) = rest.strip_prefix("__launch_bounds__") {
                rest = r.find(')').map_or(r, |e| r[e + 1..].trim_start());
            }
            if let Some(end) = rest.find('(') {
                v.push(rest[..end].trim().to_string());
            }
        }
        // BINARY(name, expr) instances
        if let Some(r) = line.strip_prefix("BINARY(") {
            if let Some(end) = r.find(',') {
                v.push(r[..end].trim().to_string());
            }
        }
    }
    v
}
