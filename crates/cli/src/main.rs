fn main() -> std::process::ExitCode {
    albatross_cli::main()
}
