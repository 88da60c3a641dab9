//! kiln's CLI with this crate's plugin registered: `cargo run -p kiln-example-custom-op --
//! analyze blurnet`.

fn main() -> std::process::ExitCode {
    kiln_cli::main_with(kiln_example_custom_op::registry(), std::env::args_os())
}
