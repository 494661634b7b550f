//! The `provsync` binary.

fn main() -> std::process::ExitCode {
    provsync::cli::main()
}
