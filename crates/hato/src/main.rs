//! The `hato` binary: everything is in the library (`hato::cli`).

fn main() -> std::process::ExitCode {
    hato::cli::main()
}
