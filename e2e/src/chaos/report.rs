//! What the soak measured: figures beside their targets, the memory curve of each replica and its flatness, and
//! every broken invariant as one line naming the app and what was seen.

use std::fmt;

/// One measured figure and its target.
#[derive(Clone, Debug)]
pub struct Figure {
    /// What was measured.
    pub name: String,
    /// The measured value, with its unit.
    pub measured: String,
    /// The target, with its unit (or `-` for a figure that only describes the run).
    pub target: String,
    /// False when the figure misses its target.
    pub ok: bool,
}

impl Figure {
    /// A figure with a target.
    pub fn new(name: &str, measured: impl fmt::Display, target: &str, ok: bool) -> Figure {
        Figure { name: name.to_owned(), measured: measured.to_string(), target: target.to_owned(), ok }
    }

    /// A figure that describes the run (how many faults, edits, …), without a target.
    pub fn info(name: &str, measured: impl fmt::Display) -> Figure {
        Figure::new(name, measured, "-", true)
    }
}

/// One `VmRSS` sample of one replica.
#[derive(Clone, Debug)]
pub struct RssSample {
    /// Seconds since the replicas were first started.
    pub t: f64,
    /// Which replica incarnation (`a1`, `b1`, `a2`, …).
    pub replica: String,
    /// `VmRSS` in kB.
    pub kb: u64,
}

/// Reads `VmRSS` (kB) of process `pid` from `/proc/PID/status`; `None` once it has exited.
pub fn vm_rss_kb(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Flatness of one replica's curve: after a warm-up (the first fifth of its samples), the last third's maximum
/// over the first third's. `None` with fewer than 10 samples (a replica that did not live long enough to tell).
pub fn flatness(kb: &[u64]) -> Option<f64> {
    if kb.len() < 10 {
        return None;
    }
    let warm = &kb[kb.len() / 5..];
    let third = warm.len() / 3;
    let first = warm[..third].iter().max().copied()?;
    let last = warm[warm.len() - third..].iter().max().copied()?;
    Some(last as f64 / first.max(1) as f64)
}

/// The memory curve as a small table per replica (at most `rows` rows each, evenly spaced), and the worst flatness
/// among the replicas that were sampled over at least half of the soak, with the replica's name. A replica that
/// lived a shorter while is shown but not judged: its curve is mostly warm-up (loading the fleet, then, for a
/// standby that takes over, the leader's work), which says nothing about a leak.
pub fn memory_table(samples: &[RssSample], rows: usize) -> (String, Option<(String, f64)>) {
    let first = samples.iter().map(|s| s.t).fold(f64::INFINITY, f64::min);
    let last = samples.iter().map(|s| s.t).fold(f64::NEG_INFINITY, f64::max);
    let mut names: Vec<&str> = samples.iter().map(|s| s.replica.as_str()).collect();
    names.dedup();
    names.sort_unstable();
    names.dedup();
    let mut out = String::new();
    let mut worst: Option<(String, f64)> = None;
    for name in names {
        let curve: Vec<&RssSample> = samples.iter().filter(|s| s.replica == name).collect();
        let kb: Vec<u64> = curve.iter().map(|s| s.kb).collect();
        let span = curve.last().map_or(0.0, |s| s.t) - curve.first().map_or(0.0, |s| s.t);
        let judged = span >= (last - first) / 2.0;
        let flat = flatness(&kb);
        let flat_text = match (flat, judged) {
            (None, _) => "too short to judge".to_owned(),
            (Some(f), true) => format!("last/first third max = {f:.2}"),
            (Some(f), false) => format!("last/first third max = {f:.2}, not judged: lived under half the soak"),
        };
        out.push_str(&format!("  replica {name} ({} samples, {flat_text})\n    t (s)   rss (MiB)\n", curve.len()));
        let step = curve.len().div_ceil(rows.max(1)).max(1);
        for (i, s) in curve.iter().enumerate() {
            if i % step == 0 || i + 1 == curve.len() {
                out.push_str(&format!("    {:>6.0}  {:>8.1}\n", s.t, s.kb as f64 / 1024.0));
            }
        }
        if let Some(f) = flat
            && judged
            && worst.as_ref().is_none_or(|(_, w)| f > *w)
        {
            worst = Some((name.to_owned(), f));
        }
    }
    (out, worst)
}

/// Everything a soak found.
#[derive(Clone, Debug, Default)]
pub struct ChaosReport {
    /// How the soak was run (apps, length, seed, schedule fingerprint, binaries).
    pub setup: Vec<String>,
    /// The figures, invariants first.
    pub figures: Vec<Figure>,
    /// The memory table (see [`memory_table`]).
    pub memory: String,
    /// Every broken invariant: one line each, naming the app (or replica, or job) and what was seen.
    pub violations: Vec<String>,
}

impl fmt::Display for ChaosReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for line in &self.setup {
            writeln!(f, "{line}")?;
        }
        let width = self.figures.iter().map(|x| x.name.len()).max().unwrap_or(10);
        writeln!(f, "{:<width$}  {:>22}  {:>22}  ok", "figure", "measured", "target")?;
        for x in &self.figures {
            let ok = if x.ok { "yes" } else { "NO" };
            writeln!(f, "{:<width$}  {:>22}  {:>22}  {ok}", x.name, x.measured, x.target)?;
        }
        writeln!(f, "memory (VmRSS of each drover replica):\n{}", self.memory)?;
        if self.violations.is_empty() {
            writeln!(f, "no invariant broken")
        } else {
            writeln!(f, "{} invariant violation(s):", self.violations.len())?;
            for v in self.violations.iter().take(50) {
                writeln!(f, "  {v}")?;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flatness_should_compare_the_last_third_with_the_first_after_warm_up() {
        // Warm-up (first fifth) is ignored, even when it is the highest.
        let flat = [900, 900, 100, 100, 100, 100, 100, 100, 100, 100];
        assert!(flatness(&flat).is_some_and(|f| (f - 1.0).abs() < 0.01), "{:?}", flatness(&flat));
        let growing: Vec<u64> = (0..30).map(|i| 100 + i * 10).collect();
        assert!(flatness(&growing).is_some_and(|f| f > 1.25), "{:?}", flatness(&growing));
        assert_eq!(flatness(&[1, 2, 3]), None, "too few samples to judge");
    }

    #[test]
    fn memory_table_should_name_the_worst_replica() {
        let mut samples = Vec::new();
        for i in 0..20u64 {
            samples.push(RssSample { t: i as f64, replica: "a1".into(), kb: 1000 });
            samples.push(RssSample { t: i as f64, replica: "b1".into(), kb: 1000 + i * 100 });
        }
        // A replica that lived a short while at the end, growing far faster than b1: shown, not judged (were it
        // judged, it would be the worst).
        for i in 15..27u64 {
            samples.push(RssSample { t: i as f64, replica: "b2".into(), kb: 100 + (i - 15) * (i - 15) * 1000 });
        }
        let short: Vec<u64> = samples.iter().filter(|s| s.replica == "b2").map(|s| s.kb).collect();
        let long: Vec<u64> = samples.iter().filter(|s| s.replica == "b1").map(|s| s.kb).collect();
        assert!(flatness(&short) > flatness(&long), "b2 grows faster: {:?} vs {:?}", flatness(&short), flatness(&long));
        let (table, worst) = memory_table(&samples, 5);
        assert!(table.contains("replica a1") && table.contains("replica b1"), "{table}");
        assert!(table.contains("not judged"), "{table}");
        assert_eq!(worst.map(|(name, _)| name), Some("b1".to_owned()));
    }
}
