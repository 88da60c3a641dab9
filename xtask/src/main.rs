//! `cargo xtask ...`: kiln's commands. All logic lives in `kiln-cli` (and the crates it calls), so
//! plugin crates can offer the very same commands with their own registry.

fn main() -> std::process::ExitCode {
    kiln_cli::main_with(kiln_models::Registry::builtin(), std::env::args_os())
}
