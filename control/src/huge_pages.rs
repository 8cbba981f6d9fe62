//! Transparent huge pages off for the whole process: a core must not stall in a page fault.
//!
//! mimalloc asks for transparent huge pages on its arenas (`madvise(MADV_HUGEPAGE)`), so on a
//! kernel in the usual `madvise` mode the first touch of each 2 MiB region allocates and zeroes
//! a whole huge page inside the fault, and returning part of one to the kernel later splits it.
//! Under a storm of new calls the dataplane cores touch fresh allocator pages (SIP messages,
//! growing tables) and stalled in those faults: turns of 5–138 ms spent in the kernel with no
//! system call and no context switch, which is what made media packets late while control
//! was saturated. `bench/saturation/run.sh 500 30 20000` on the 2-core VM: with huge pages
//! the storm made 1.09–1.33 % of media packets late (8 runs; 843 ms of core turns over 2 ms
//! in one); without, 0.14–0.28 % (5 runs; 136–193 ms), under the 1 % that p99 under 2 ms
//! needs (docs/benchmarks.md, "Fourth round").
//!
//! `prctl(PR_SET_THP_DISABLE)` is the per-process switch: it covers mappings made before the
//! call (mimalloc's first arena is mapped before `main`) and after, whatever the allocator
//! asked for and whatever the machine's `transparent_hugepage` setting, and the process's
//! children inherit it. Control's memory is small objects, and no measured path gained from
//! huge pages: alternating builds with and without them, speech recognition and durable API
//! creates stayed within the VM's spread, while call setup end to end rose 0.06–0.07× →
//! 0.10–0.11× SIPp's rate (docs/benchmarks.md).

/// Turns transparent huge pages off for this process. Returns the kernel's refusal, if any
/// (a kernel without the `prctl`); the process then runs as before.
pub fn disable_for_process() -> std::io::Result<()> {
    rustix::thread::disable_transparent_huge_pages(true)?;
    Ok(())
}

/// Whether transparent huge pages are off for this process.
pub fn disabled_for_process() -> std::io::Result<bool> {
    Ok(rustix::thread::transparent_huge_pages_are_disabled()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_switch_turns_huge_pages_off_and_the_kernel_reports_it() {
        // Each test binary is its own process: turning it off here touches no other test.
        disable_for_process().expect("PR_SET_THP_DISABLE");
        assert!(disabled_for_process().unwrap());
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        assert!(
            status.lines().any(|line| line == "THP_enabled:\t0"),
            "/proc/self/status does not say THP_enabled 0:\n{status}"
        );
    }
}
