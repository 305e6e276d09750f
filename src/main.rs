//! The `huixin` binary: everything lives in the library; see [`huixin::cli`].

fn main() -> std::process::ExitCode {
    huixin::cli::main()
}
