//! The `xgserve` binary: parses the command line and hands it to the library.

use clap::Parser;

/// mimalloc rather than glibc's malloc: 9% more 100-row and 2-3% more 2-row predictions per second in
/// `benches/load.sh` (a 100-row body is a few hundred small allocations).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    // With transparent huge pages set to `always` (common on Linux hosts), mimalloc's arenas become
    // resident 2 MiB at a time: 24 MB at start instead of 18 MB. The heap is small, so huge pages buy
    // nothing here.
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE takes plain integers and changes only this process's paging; if it
    // fails, the process runs as before with a larger resident set.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
    let cli = xgserve::cli::Cli::parse();
    match xgserve::commands::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
