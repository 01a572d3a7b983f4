//! The `albatross` program, built under this package for the integration tests.

fn main() -> std::process::ExitCode {
    albatross_cli::main()
}
