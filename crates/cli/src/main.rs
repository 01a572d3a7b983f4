/// mimalloc instead of glibc malloc: corpus preparation allocates millions of small strings
/// (tokenizer encodings, sentences) and spent a third of its time in glibc's allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    albatross_cli::main()
}
