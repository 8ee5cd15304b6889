#![forbid(unsafe_code)]

/// jemalloc returns freed memory to the system and fragments less than glibc's malloc under
/// tokio's threads: at 10,000 grants the operator's resident memory is what its caches hold.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    sas_operator::cli::main()
}
