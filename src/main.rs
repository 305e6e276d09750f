//! The `huixin` binary: everything lives in the library; see [`huixin::cli`].

/// mimalloc rather than the system allocator: a message's handling makes many small, short-lived
/// allocations on several threads, where glibc's malloc spent a sixth of the server's CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    huixin::cli::main()
}
