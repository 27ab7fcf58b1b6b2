//! How busy this machine is, from `/proc/stat` (Linux): the CPU time all processes used over
//! an interval, in cores. Before a `dr-lag` sample, while the deployment is idle, it shows the
//! load of whatever else runs on the machine (the figures of a shared machine depend on it).

use std::time::Duration;

use super::super::super::Failure;

/// The machine's CPU time counters: (busy, total), in the units of `/proc/stat` (ticks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CpuTimes {
    busy: u64,
    total: u64,
}

/// Cores kept busy, on average over the next `interval`, by every process of the machine
/// (`/proc/stat`: busy = all time but `idle` and `iowait`).
///
/// Errors: `/proc/stat` cannot be read or has no `cpu` line of numbers.
pub async fn busy_cores(interval: Duration) -> Result<f64, Failure> {
    let before = read()?;
    tokio::time::sleep(interval).await;
    let after = read()?;
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1) as f64;
    let total = after.total.saturating_sub(before.total);
    if total == 0 {
        return Ok(0.0);
    }
    Ok(after.busy.saturating_sub(before.busy) as f64 / total as f64 * cores)
}

fn read() -> Result<CpuTimes, Failure> {
    let text = std::fs::read_to_string("/proc/stat")
        .map_err(|error| Failure::system(format!("cannot read /proc/stat: {error}")))?;
    parse(&text).ok_or_else(|| {
        Failure::system(
            "/proc/stat: expected a first line `cpu USER NICE SYSTEM IDLE IOWAIT ...` of numbers, found none",
        )
    })
}

/// The counters of the `cpu` line (all cores) of `/proc/stat`'s text.
fn parse(text: &str) -> Option<CpuTimes> {
    let line = text.lines().find(|line| line.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    if fields.len() < 4 {
        return None;
    }
    // user nice system idle iowait irq softirq steal [guest guest_nice: already in user/nice]
    let total: u64 = fields.iter().take(8).sum();
    let idle = fields[3] + fields.get(4).copied().unwrap_or(0);
    Some(CpuTimes {
        busy: total - idle,
        total,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpu_line_gives_busy_and_total() {
        let text = "cpu  100 5 50 800 40 3 2 0 7 0\ncpu0 50 2 25 400 20 1 1 0 0 0\nintr 1\n";
        assert_eq!(
            parse(text),
            Some(CpuTimes {
                busy: 160,
                total: 1000
            })
        );
        assert_eq!(parse("cpu0 1 2 3 4\n"), None);
        assert_eq!(parse("cpu  1 x 3 4\n"), None);
        assert_eq!(parse("cpu  1 2\n"), None);
    }

    #[tokio::test]
    async fn this_machine_reports_a_plausible_load() {
        let busy = busy_cores(Duration::from_millis(50)).await.unwrap();
        let cores = std::thread::available_parallelism().unwrap().get() as f64;
        assert!((0.0..=cores + 0.01).contains(&busy), "{busy} of {cores}");
    }
}
