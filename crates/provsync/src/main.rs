//! The `provsync` binary.

/// mimalloc: the pipeline allocates millions of short-lived strings; glibc malloc
/// cost a quarter of the CPU and fragmented memory across threads.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    provsync::cli::main()
}
