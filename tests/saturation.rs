//! The dataplane comes first (issue 14, item 2), at small scale: `bench/saturation/run.sh`
//! holds calls with two-way media through `bench callee --media echo` while a storm of new
//! calls, as fast as control takes them, saturates control against SIPp's uas; once quiet,
//! once with the storm. Every call must complete (the script fails otherwise), no media
//! packet may be lost at the phones, and no callee that answered may see a retransmission
//! (SIPp counts an INVITE it had answered sent again, or its 200 OK re-sent for a late ACK).
//! No timing is asserted: the share of packets sent late is printed, and measured at scale
//! in `docs/benchmarks.md`.

use outdial_tests::run_bench_script;

#[test]
fn calls_keep_their_media_and_answered_callees_see_no_retransmission_while_a_storm_saturates_control()
 {
    // The logs stay in `_dir` until the end of the test.
    let (_dir, stdout) = run_bench_script("saturation/run.sh", &["20", "6", "400"]);
    let logs = stdout
        .lines()
        .find_map(|line| line.strip_prefix("logs: "))
        .expect("the script names its logs");
    let results =
        std::fs::read_to_string(std::path::Path::new(logs).join("results.tsv")).expect("results");
    let mut runs = Vec::new();
    for row in results.lines() {
        // run, late %, lost, gap p99, jitter p99, cores' CPUs, control's CPUs, storm calls/s,
        // SIPp retransmissions.
        let fields: Vec<&str> = row.split('\t').collect();
        let [
            run,
            _late,
            lost,
            _gap,
            _jitter,
            _cores,
            _control,
            rate,
            retransmissions,
        ] = fields.as_slice()
        else {
            panic!("bad results row {row:?}");
        };
        assert_eq!(*lost, "0", "{run}: packets lost at the phones\n{stdout}");
        assert_eq!(
            *retransmissions, "0",
            "{run}: SIPp saw a retransmission\n{stdout}"
        );
        runs.push((run.to_string(), rate.to_string()));
    }
    assert_eq!(runs.len(), 2, "{results}");
    assert_eq!((runs[0].0.as_str(), runs[0].1.as_str()), ("quiet", "-"));
    assert_eq!(runs[1].0, "storm");
    assert!(
        runs[1].1.parse::<u64>().is_ok_and(|rate| rate > 0),
        "the storm placed its calls: {results}"
    );
}
