//! The process-wide CUDA runtime: one context and stream on GPU 0, the cuBLAS handle, the kernel
//! modules (compiled by NVRTC on first use for the device's compute capability, then cached)
//! and the caching allocator. Every op of the backend runs on the one stream, so buffers can be
//! reused in host order without events (a buffer freed here was last used by work already
//! queued before any later use).
//!
//! Driver errors inside an op (out of memory after the cache was released, a failed launch)
//! panic with a message naming the op: the op interface returns storages, not results, and such
//! errors are not recoverable mid-step anyway. Asking for a GPU where there is none is a normal
//! error, found by `probe` / `init` before any op runs.
use super::alloc::Allocator;
use super::{compile_kernel_file, probe, KERNEL_SOURCES};
use cudarc::cublas::{result as cublas_result, sys as cublas_sys};
use cudarc::driver::{result, sys, CudaContext, CudaStream};
use std::collections::HashMap;
use std::ffi::{c_void, CString};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// A profiled launch: its name and the events recorded before and after it.
type ProfiledLaunch = (
    &'static str,
    cudarc::driver::CudaEvent,
    cudarc::driver::CudaEvent,
);

pub(crate) struct Runtime {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    cublas: cublas_sys::cublasHandle_t,
    /// NVRTC target: the device's compute capability, or the newest one we compile for.
    arch: u32,
    pub(crate) name: String,
    functions: Mutex<HashMap<(&'static str, &'static str), sys::CUfunction>>,
    modules: Mutex<HashMap<&'static str, sys::CUmodule>>,
    pub(crate) alloc: Allocator,
    tf32: AtomicBool,
    /// `COATT_CUDA_SYNC` at start-up: synchronise after every launch and GEMM
    sync_each: bool,
    /// `COATT_CUDA_PROFILE` at start-up: a pair of events around every launch and GEMM
    profile: Option<Mutex<Vec<ProfiledLaunch>>>,
}

// SAFETY: the raw handles (context-bound module, function and cuBLAS handles) are only used
// with the context bound to the calling thread (`rt()` binds it), and cuBLAS calls on one
// handle are serialised by the single stream's host order (the handle is not shared with
// other libraries).
unsafe impl Send for Runtime {}
unsafe impl Sync for Runtime {}

static RUNTIME: OnceLock<Result<Runtime, String>> = OnceLock::new();

pub(crate) fn runtime_if_started() -> Option<&'static Result<Runtime, String>> {
    RUNTIME.get()
}

/// Starts the runtime on GPU 0 (once per process); the error is one line saying why not.
pub fn init() -> Result<(), String> {
    RUNTIME
        .get_or_init(|| {
            probe()?;
            Runtime::new()
        })
        .as_ref()
        .map(|_| ())
        .map_err(Clone::clone)
}

/// The runtime, bound to the calling thread. Panics if `init` failed or was never called with
/// success: a CUDA storage cannot exist before that.
pub(crate) fn rt() -> &'static Runtime {
    let r = match RUNTIME.get() {
        Some(Ok(r)) => r,
        Some(Err(e)) => panic!("CUDA runtime unavailable: {e}"),
        None => panic!("CUDA runtime used before coatt::backend::cuda::init()"),
    };
    r.ctx
        .bind_to_thread()
        .unwrap_or_else(|e| panic!("CUDA: binding the context to this thread failed: {e:?}"));
    r
}

/// TF32 tensor-core math for the float32 GEMMs (cuBLAS `CUBLAS_COMPUTE_32F_FAST_TF32`), on by
/// default like PyTorch's conv default; `COATT_TF32=0` in the environment starts with it off.
pub fn set_tf32(on: bool) {
    if let Some(Ok(r)) = RUNTIME.get() {
        r.tf32.store(on, Ordering::Relaxed);
    }
}
pub fn tf32() -> bool {
    matches!(RUNTIME.get(), Some(Ok(r)) if r.tf32.load(Ordering::Relaxed))
}

/// Waits for every queued op (for timing and before reading results by other means).
pub fn synchronize() {
    if let Some(Ok(_)) = RUNTIME.get() {
        rt().sync("synchronize");
    }
}

/// With `COATT_CUDA_PROFILE=1` set at start-up: the device time of every kernel and GEMM since
/// the last call, summed by name, as (name, calls, total ms), largest first. None when the
/// profiler is off. Events around each launch cost a little time of their own.
pub fn profile_report() -> Option<Vec<(String, usize, f64)>> {
    let r = match RUNTIME.get() {
        Some(Ok(r)) => r,
        _ => return None,
    };
    let events = std::mem::take(&mut *r.profile.as_ref()?.lock().unwrap());
    rt().sync("profile report");
    let mut by: HashMap<&'static str, (usize, f64)> = HashMap::new();
    for (name, a, b) in events {
        let ms = a.elapsed_ms(&b).unwrap_or(0.0) as f64;
        let e = by.entry(name).or_default();
        e.0 += 1;
        e.1 += ms;
    }
    let mut v: Vec<_> = by
        .into_iter()
        .map(|(n, (c, t))| (n.to_string(), c, t))
        .collect();
    v.sort_by(|a, b| b.2.total_cmp(&a.2));
    Some(v)
}

/// Name of the GPU the runtime runs on.
pub fn device_name() -> Option<String> {
    match RUNTIME.get() {
        Some(Ok(r)) => Some(r.name.clone()),
        _ => None,
    }
}

/// Device-time measurement with CUDA events: runs `f` once and returns its GPU time in ms.
pub fn time_ms(mut f: impl FnMut()) -> f32 {
    let r = rt();
    let flags = Some(sys::CUevent_flags::CU_EVENT_DEFAULT);
    let a = r.ctx.new_event(flags).expect("cuEventCreate");
    let b = r.ctx.new_event(flags).expect("cuEventCreate");
    a.record(&r.stream).expect("cuEventRecord");
    f();
    b.record(&r.stream).expect("cuEventRecord");
    b.synchronize().expect("cuEventSynchronize");
    a.elapsed_ms(&b).expect("cuEventElapsedTime")
}

impl Runtime {
    fn new() -> Result<Runtime, String> {
        let ctx = CudaContext::new(0).map_err(|e| format!("cuCtx on GPU 0: {e:?}"))?;
        // We order work by the single stream ourselves; cudarc's per-buffer events are not used.
        unsafe { ctx.disable_event_tracking() };
        let (major, minor) = ctx
            .compute_capability()
            .map_err(|e| format!("compute capability: {e:?}"))?;
        let cc = (major * 10 + minor) as u32;
        let arch = [90u32, 89, 86, 80]
            .into_iter()
            .find(|&a| a <= cc)
            .ok_or_else(|| {
                format!("compute capability {major}.{minor}: coatt needs 8.0 or newer")
            })?;
        let name = ctx.name().unwrap_or_else(|_| "GPU".into());
        let stream = ctx.default_stream();
        // SAFETY: only tries to open the library.
        if !unsafe { cublas_sys::is_culib_present() } {
            return Err("libcublas could not be loaded (install the CUDA toolkit's cuBLAS)".into());
        }
        let cublas = cublas_result::create_handle().map_err(|e| format!("cublasCreate: {e:?}"))?;
        // SAFETY: a live handle and the context's stream.
        unsafe { cublas_result::set_stream(cublas, stream.cu_stream() as _) }
            .map_err(|e| format!("cublasSetStream: {e:?}"))?;
        let tf32 = std::env::var("COATT_TF32").map_or(true, |v| v != "0");
        // cuBLAS's Hopper kernels want a workspace of 32 MiB (what PyTorch gives them); a
        // plain allocation that lives as long as the process
        const WORKSPACE: usize = 32 << 20;
        // SAFETY: a device allocation handed to the handle for the process's lifetime.
        unsafe {
            let ws =
                result::malloc_sync(WORKSPACE).map_err(|e| format!("cuBLAS workspace: {e:?}"))?;
            cublas_sys::cublasSetWorkspace_v2(cublas, ws as *mut c_void, WORKSPACE)
                .result()
                .map_err(|e| format!("cublasSetWorkspace: {e:?}"))?;
        }
        Ok(Runtime {
            ctx,
            stream,
            cublas,
            arch,
            name,
            functions: Mutex::new(HashMap::new()),
            modules: Mutex::new(HashMap::new()),
            alloc: Allocator::default(),
            tf32: AtomicBool::new(tf32),
            sync_each: std::env::var_os("COATT_CUDA_SYNC").is_some(),
            profile: std::env::var_os("COATT_CUDA_PROFILE").map(|_| Mutex::new(Vec::new())),
        })
    }

    pub(crate) fn stream(&self) -> sys::CUstream {
        self.stream.cu_stream()
    }
    pub(crate) fn cublas(&self) -> cublas_sys::cublasHandle_t {
        self.cublas
    }
    pub(crate) fn tf32(&self) -> bool {
        self.tf32.load(Ordering::Relaxed)
    }

    /// Runs `f` (one launch or GEMM) between two recorded events when profiling.
    pub(crate) fn profiled(&self, name: &'static str, f: impl FnOnce()) {
        let Some(list) = &self.profile else {
            return f();
        };
        let flags = Some(sys::CUevent_flags::CU_EVENT_DEFAULT);
        let a = self.ctx.new_event(flags).expect("cuEventCreate");
        let b = self.ctx.new_event(flags).expect("cuEventCreate");
        a.record(&self.stream).expect("cuEventRecord");
        f();
        b.record(&self.stream).expect("cuEventRecord");
        list.lock().unwrap().push((name, a, b));
    }

    /// With `COATT_CUDA_SYNC` set: waits after `what`, so a kernel's fault surfaces at the op
    /// that caused it.
    pub(crate) fn sync_if_asked(&self, what: &str) {
        if self.sync_each {
            self.sync(what);
        }
    }

    pub(crate) fn sync(&self, what: &str) {
        self.stream
            .synchronize()
            .unwrap_or_else(|e| panic!("CUDA error during {what}: {e:?}"));
    }

    /// The kernel `name` of `kernels/<file>`, compiling and loading the file on first use.
    pub(crate) fn function(&self, file: &'static str, name: &'static str) -> sys::CUfunction {
        if let Some(&f) = self.functions.lock().unwrap().get(&(file, name)) {
            return f;
        }
        let module = {
            let mut mods = self.modules.lock().unwrap();
            match mods.get(file) {
                Some(&m) => m,
                None => {
                    let src = KERNEL_SOURCES
                        .iter()
                        .find(|(f, _)| *f == file)
                        .unwrap_or_else(|| panic!("no kernel file kernels/{file}"))
                        .1;
                    let ptx =
                        compile_kernel_file(file, src, self.arch).unwrap_or_else(|e| panic!("{e}"));
                    let c = CString::new(ptx).expect("PTX has no NUL");
                    // SAFETY: a NUL-terminated PTX image, the context bound by rt().
                    let m = unsafe { result::module::load_data(c.as_ptr() as *const c_void) }
                        .unwrap_or_else(|e| panic!("loading kernels/{file}: {e:?}"));
                    mods.insert(file, m);
                    m
                }
            }
        };
        let cname = CString::new(name).expect("kernel name");
        // SAFETY: a loaded module.
        let f = unsafe { result::module::get_function(module, cname) }
            .unwrap_or_else(|e| panic!("kernel {name} not found in kernels/{file}: {e:?}"));
        self.functions.lock().unwrap().insert((file, name), f);
        f
    }

    /// Lets `file::name` use `bytes` of dynamic shared memory (above the default 48 KiB).
    pub(crate) fn allow_shared(&self, file: &'static str, name: &'static str, bytes: u32) {
        if bytes <= 48 * 1024 {
            return;
        }
        let f = self.function(file, name);
        // SAFETY: a loaded function; the attribute only raises a per-launch limit.
        unsafe {
            sys::cuFuncSetAttribute(
                f,
                sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                bytes as i32,
            )
        }
        .result()
        .unwrap_or_else(|e| panic!("{name}: {bytes} B of shared memory: {e:?}"));
    }

    /// Launches `file::name` on the stream. `params` point at the argument values (see `arg`),
    /// which must match the kernel's C types exactly (i32 = int, i64 = long long, u64 = pointer).
    pub(crate) fn launch(
        &self,
        file: &'static str,
        name: &'static str,
        grid: (u32, u32, u32),
        block: u32,
        shared_bytes: u32,
        params: &[*mut c_void],
    ) {
        self.launch_3d(file, name, grid, (block, 1, 1), shared_bytes, params)
    }

    pub(crate) fn launch_3d(
        &self,
        file: &'static str,
        name: &'static str,
        grid: (u32, u32, u32),
        block: (u32, u32, u32),
        shared_bytes: u32,
        params: &[*mut c_void],
    ) {
        let f = self.function(file, name);
        let mut p = params.to_vec();
        // SAFETY: the parameters match the kernel signature (each call site is checked by the
        // parity tests against the CPU reference).
        self.profiled(name, || {
            unsafe { result::launch_kernel(f, grid, block, shared_bytes, self.stream(), &mut p) }
                .unwrap_or_else(|e| panic!("launching {name} (kernels/{file}): {e:?}"))
        });
        self.sync_if_asked(name);
    }

    /// Launches an element-wise kernel over `n` items with grid-stride loops.
    pub(crate) fn launch_n(
        &self,
        file: &'static str,
        name: &'static str,
        n: usize,
        params: &[*mut c_void],
    ) {
        if n == 0 {
            return;
        }
        let blocks = n.div_ceil(256).min(65_535 * 8) as u32;
        self.launch(file, name, (blocks, 1, 1), 256, 0, params);
    }
}

/// A kernel argument: a pointer to the value, valid while the value lives (pass temporaries
/// inside the `launch` call's argument list so they outlive it).
pub(crate) fn arg<T: Copy>(v: &T) -> *mut c_void {
    v as *const T as *mut c_void
}
