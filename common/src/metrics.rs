//! Metrics building blocks both binaries expose on `/metrics`: meters that count and keep
//! Kafka's (Yammer's) 1-, 5- and 15-minute exponentially weighted rates, latency
//! reservoirs with quantiles, and [`Exposition`], which writes samples gathered at scrape
//! time in the Prometheus text format through `prometheus-client`'s encoder.
//!
//! Names follow what Kafka users' dashboards read: the Prometheus JMX exporter's usual
//! rules (`kafka_server_brokertopicmetrics_bytesin_total{topic}`,
//! `kafka_network_requestmetrics_totaltimems{request,quantile}`, ...) and the exporter's
//! defaults for the names Kafka UI looks for
//! (`kafka_server_BrokerTopicMetrics_FifteenMinuteRate{name="BytesInPerSec"}`).
//!
//! The rates advance when read (at scrape), not on a timer: the counts since the last read
//! are spread evenly over the 5-second ticks that passed, which is what a ticking meter
//! would have computed for a steady rate, and costs nothing while nobody scrapes.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

/// The `Content-Type` of a scrape's answer (Prometheus text format 0.0.4).
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Yammer's tick: rates are updated in 5-second steps.
const TICK: Duration = Duration::from_secs(5);

/// The 1-, 5- and 15-minute rates and the mean rate since start, per second.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Rates {
    /// Exponentially weighted over one minute.
    pub one_minute: f64,
    /// Over five minutes.
    pub five_minute: f64,
    /// Over fifteen minutes.
    pub fifteen_minute: f64,
    /// Count divided by the time since the meter started.
    pub mean: f64,
}

/// The weight of one tick's rate in an `minutes`-minute moving average (Yammer's alpha).
fn alpha(minutes: f64) -> f64 {
    1.0 - (-TICK.as_secs_f64() / 60.0 / minutes).exp()
}

/// Advances one exponentially weighted rate by `ticks` ticks at which events arrived at
/// `per_second` (pure: the closed form of applying Yammer's update `ticks` times with the
/// same instant rate). A rate never set starts at the first instant rate, as Yammer's does.
pub fn ewma_advance(rate: Option<f64>, per_second: f64, ticks: u64, minutes: f64) -> Option<f64> {
    if ticks == 0 {
        return rate;
    }
    let start = rate.unwrap_or(per_second);
    let keep = (1.0 - alpha(minutes)).powf(ticks as f64);
    Some(per_second + (start - per_second) * keep)
}

#[derive(Debug)]
struct Ewma {
    last_tick: Instant,
    counted: u64,
    one: Option<f64>,
    five: Option<f64>,
    fifteen: Option<f64>,
}

/// A count with Kafka's rates: `Count`, `OneMinuteRate`, `FiveMinuteRate`,
/// `FifteenMinuteRate`, `MeanRate`. Marking is one atomic add.
#[derive(Debug)]
pub struct Meter {
    count: AtomicU64,
    started: Instant,
    ewma: Mutex<Ewma>,
}

impl Default for Meter {
    fn default() -> Meter {
        let now = Instant::now();
        Meter {
            count: AtomicU64::new(0),
            started: now,
            ewma: Mutex::new(Ewma { last_tick: now, counted: 0, one: None, five: None, fifteen: None }),
        }
    }
}

impl Meter {
    /// Counts `n` events.
    pub fn mark(&self, n: u64) {
        self.count.fetch_add(n, Ordering::Relaxed);
    }

    /// Events counted since start.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// The rates as of `now`, advancing them by the ticks passed since the last read.
    pub fn rates(&self, now: Instant) -> Rates {
        let count = self.count();
        let mut e = self.ewma.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let elapsed = now.saturating_duration_since(e.last_tick);
        let ticks = (elapsed.as_nanos() / TICK.as_nanos()) as u64;
        if ticks > 0 {
            let per_second = count.saturating_sub(e.counted) as f64 / (ticks as f64 * TICK.as_secs_f64());
            e.one = ewma_advance(e.one, per_second, ticks, 1.0);
            e.five = ewma_advance(e.five, per_second, ticks, 5.0);
            e.fifteen = ewma_advance(e.fifteen, per_second, ticks, 15.0);
            e.counted = count;
            e.last_tick += TICK * u32::try_from(ticks).unwrap_or(u32::MAX);
        }
        let up = now.saturating_duration_since(self.started).as_secs_f64();
        Rates {
            one_minute: e.one.unwrap_or(0.0),
            five_minute: e.five.unwrap_or(0.0),
            fifteen_minute: e.fifteen.unwrap_or(0.0),
            mean: if up > 0.0 { count as f64 / up } else { 0.0 },
        }
    }
}

/// How many recent samples a [`Reservoir`] keeps (Yammer's reservoirs keep 1028).
const RESERVOIR_SIZE: usize = 1028;

/// The quantiles Kafka's histograms report (`50thPercentile` ... `999thPercentile`).
pub const QUANTILES: [f64; 6] = [0.5, 0.75, 0.95, 0.98, 0.99, 0.999];

/// The last [`RESERVOIR_SIZE`] samples of a timing (in ms), with their count and sum since
/// start; quantiles are computed over the samples kept.
#[derive(Debug, Default)]
pub struct Reservoir {
    inner: Mutex<Ring>,
}

#[derive(Debug, Default)]
struct Ring {
    samples: Vec<f64>,
    next: usize,
    count: u64,
    sum: f64,
}

/// What a [`Reservoir`] holds at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    /// Samples since start.
    pub count: u64,
    /// Their sum.
    pub sum: f64,
    /// `(quantile, value)` for each of [`QUANTILES`], over the recent samples (empty when none).
    pub quantiles: Vec<(f64, f64)>,
}

impl Reservoir {
    /// Records one sample.
    pub fn record(&self, value: f64) {
        let mut r = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        r.count += 1;
        r.sum += value;
        if r.samples.len() < RESERVOIR_SIZE {
            r.samples.push(value);
        } else {
            let i = r.next;
            r.samples[i] = value;
        }
        r.next = (r.next + 1) % RESERVOIR_SIZE;
    }

    /// Records a duration in milliseconds.
    pub fn record_duration(&self, d: Duration) {
        self.record(d.as_secs_f64() * 1000.0);
    }

    /// Count, sum and quantiles now.
    pub fn snapshot(&self) -> Snapshot {
        let (count, sum, mut samples) = {
            let r = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            (r.count, r.sum, r.samples.clone())
        };
        samples.sort_by(f64::total_cmp);
        let quantiles = if samples.is_empty() {
            Vec::new()
        } else {
            QUANTILES.iter().map(|&q| (q, quantile(&samples, q))).collect()
        };
        Snapshot { count, sum, quantiles }
    }
}

/// The `q` quantile of sorted `values`, interpolated between neighbours as Yammer's
/// snapshots compute it (pure). `values` must not be empty.
pub fn quantile(values: &[f64], q: f64) -> f64 {
    let n = values.len();
    let pos = q * (n as f64 + 1.0);
    let index = pos.floor() as usize;
    if index < 1 {
        return values[0];
    }
    if index >= n {
        return values[n - 1];
    }
    let lower = values[index - 1];
    let upper = values[index];
    lower + (pos - pos.floor()) * (upper - lower)
}

/// The names of one meter: the count as the JMX exporter's rules name it (without
/// `_total`), the family of its rates and the MBean name Kafka gives it.
#[derive(Clone, Copy, Debug)]
pub struct MeterNames {
    /// For example `kafka_server_brokertopicmetrics_bytesin`.
    pub count: &'static str,
    /// For example `kafka_server_BrokerTopicMetrics`.
    pub group: &'static str,
    /// For example `BytesInPerSec`.
    pub mbean: &'static str,
    /// What it counts.
    pub help: &'static str,
}

/// Labels of one sample, in order.
pub type Labels = Vec<(&'static str, String)>;

#[derive(Debug)]
struct Family {
    help: &'static str,
    kind: MetricType,
    samples: Vec<(Labels, f64)>,
}

/// Samples gathered at scrape time, grouped into families by name, written in the
/// Prometheus text format. A family's type and help come from its first sample.
#[derive(Debug, Default)]
pub struct Exposition {
    families: BTreeMap<String, Family>,
}

impl Exposition {
    fn add(&mut self, name: &str, help: &'static str, kind: MetricType, labels: Labels, value: f64) {
        self.families
            .entry(name.to_string())
            .or_insert_with(|| Family { help, kind, samples: Vec::new() })
            .samples
            .push((labels, value));
    }

    /// A gauge sample.
    pub fn gauge(&mut self, name: &str, help: &'static str, labels: Labels, value: f64) {
        self.add(name, help, MetricType::Gauge, labels, value);
    }

    /// A counter sample; the text format names it `<name>_total`.
    pub fn counter(&mut self, name: &str, help: &'static str, labels: Labels, value: f64) {
        self.add(name, help, MetricType::Counter, labels, value);
    }

    /// An untyped sample, as the JMX exporter writes a histogram's quantiles and count.
    pub fn untyped(&mut self, name: &str, help: &'static str, labels: Labels, value: f64) {
        self.add(name, help, MetricType::Unknown, labels, value);
    }

    /// A meter as the JMX exporter's rules name it, `<count>_total` (with `labels`), and
    /// its rates under the exporter's default names, which Kafka UI reads:
    /// `<group>_<Rate>{name="<mbean>", labels...}`.
    pub fn meter(&mut self, names: &MeterNames, labels: &Labels, meter: &Meter, now: Instant) {
        self.counter(names.count, names.help, labels.clone(), meter.count() as f64);
        let rates = meter.rates(now);
        let mut with_name = vec![("name", names.mbean.to_string())];
        with_name.extend(labels.iter().cloned());
        for (suffix, value) in [
            ("OneMinuteRate", rates.one_minute),
            ("FiveMinuteRate", rates.five_minute),
            ("FifteenMinuteRate", rates.fifteen_minute),
            ("MeanRate", rates.mean),
        ] {
            self.gauge(
                &format!("{}_{suffix}", names.group),
                "events per second, exponentially weighted (a Kafka meter's rates, named as the JMX exporter does by default)",
                with_name.clone(),
                value,
            );
        }
    }

    /// A reservoir as the JMX exporter writes a Kafka histogram: `<name>{quantile}` and
    /// `<name>_count`.
    pub fn summary(&mut self, name: &str, help: &'static str, labels: &Labels, snapshot: &Snapshot) {
        for (q, v) in &snapshot.quantiles {
            let mut l = labels.clone();
            l.push(("quantile", q.to_string()));
            self.untyped(name, help, l, *v);
        }
        self.untyped(&format!("{name}_count"), help, labels.clone(), snapshot.count as f64);
        self.untyped(&format!("{name}_sum"), help, labels.clone(), snapshot.sum);
    }

    /// The text exposition, written through `prometheus-client`'s encoder.
    pub fn encode(self) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Gathered(Mutex::new(Some(self)))));
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry);
        out
    }
}

/// Hands an [`Exposition`] to `prometheus-client` as a collector (once).
#[derive(Debug)]
struct Gathered(Mutex<Option<Exposition>>);

impl Collector for Gathered {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let taken = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        let Some(exposition) = taken else { return Ok(()) };
        for (name, family) in exposition.families {
            let mut metric = encoder.encode_descriptor(&name, family.help, None, family.kind)?;
            for (labels, value) in &family.samples {
                let mut sample = metric.encode_family(labels)?;
                if matches!(family.kind, MetricType::Counter) {
                    sample.encode_counter::<prometheus_client::encoding::NoLabelSet, f64, f64>(value, None)?;
                } else {
                    sample.encode_gauge(value)?;
                }
            }
        }
        Ok(())
    }
}

/// The process's own figures under the names every Prometheus client library uses
/// (`process_cpu_seconds_total`, `process_resident_memory_bytes`, `process_open_fds`,
/// `process_max_fds`), read from `/proc/self`; any that cannot be read is left out.
pub fn process(out: &mut Exposition) {
    if let Some(seconds) = std::fs::read_to_string("/proc/self/stat").ok().and_then(|s| cpu_seconds(&s)) {
        out.counter("process_cpu_seconds", "user and system CPU time spent, in seconds", Vec::new(), seconds);
    }
    if let Some(rss) = std::fs::read_to_string("/proc/self/status").ok().and_then(|s| status_kib(&s, "VmRSS:")) {
        out.gauge("process_resident_memory_bytes", "resident memory, in bytes", Vec::new(), (rss * 1024) as f64);
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        out.gauge("process_open_fds", "open file descriptors (connections count here)", Vec::new(), fds.count() as f64);
    }
    if let Some(max) = std::fs::read_to_string("/proc/self/limits").ok().and_then(|s| max_open_files(&s)) {
        out.gauge("process_max_fds", "the open-files limit", Vec::new(), max as f64);
    }
}

/// Linux reports CPU times in clock ticks of 1/100 s to user space (`USER_HZ`).
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;

/// utime + stime from `/proc/self/stat` (pure): fields 14 and 15, counted after the
/// command name, which is in parentheses and may hold spaces.
fn cpu_seconds(stat: &str) -> Option<f64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // After the name, field 3 (state) is index 0, so utime (14) is index 11.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / CLOCK_TICKS_PER_SECOND)
}

/// A `kB` line of `/proc/self/status` (pure).
fn status_kib(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|l| l.strip_prefix(key)).and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// The soft open-files limit from `/proc/self/limits` (pure).
fn max_open_files(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..].split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9 * b.abs().max(1.0)
    }

    #[test]
    fn ewma_advance_follows_yammer_updates() {
        // (start, per_second, ticks, minutes, expected)
        let a1 = alpha(1.0);
        type Case = (Option<f64>, f64, u64, f64, Option<f64>);
        let cases: &[Case] = &[
            (None, 10.0, 0, 1.0, None),
            (Some(3.0), 10.0, 0, 1.0, Some(3.0)),
            // The first tick sets the rate.
            (None, 10.0, 1, 1.0, Some(10.0)),
            // One tick moves alpha of the way.
            (Some(0.0), 10.0, 1, 1.0, Some(10.0 * a1)),
            (Some(10.0), 0.0, 2, 1.0, Some(10.0 * (1.0 - a1) * (1.0 - a1))),
            // A steady rate stays.
            (Some(5.0), 5.0, 1000, 15.0, Some(5.0)),
        ];
        for &(start, rate, ticks, minutes, expected) in cases {
            let got = ewma_advance(start, rate, ticks, minutes);
            match (got, expected) {
                (Some(g), Some(e)) => assert!(close(g, e), "{start:?} {rate} {ticks} {minutes}: {g} != {e}"),
                (g, e) => assert_eq!(g, e),
            }
        }
        // Applying ticks one by one equals the closed form.
        let mut r = Some(2.0);
        for _ in 0..7 {
            r = ewma_advance(r, 9.0, 1, 5.0);
        }
        assert!(close(r.unwrap(), ewma_advance(Some(2.0), 9.0, 7, 5.0).unwrap()));
        // The 1-minute rate falls to about 1/e of its value per minute without events.
        let after_minute = ewma_advance(Some(100.0), 0.0, 12, 1.0).unwrap();
        assert!((after_minute - 100.0 / std::f64::consts::E).abs() < 0.01, "{after_minute}");
    }

    #[test]
    fn meter_rates_advance_per_tick() {
        let m = Meter::default();
        m.mark(50);
        assert_eq!(m.count(), 50);
        // Before a tick passes the rates are 0.
        assert_eq!(m.rates(m.started).fifteen_minute, 0.0);
        // One tick: 50 events in 5 s.
        let r = m.rates(m.started + TICK);
        assert!(close(r.one_minute, 10.0) && close(r.fifteen_minute, 10.0), "{r:?}");
        assert!(close(r.mean, 10.0));
        // Nothing more for a tick: the 1-minute rate falls faster than the 15-minute one.
        let r = m.rates(m.started + TICK * 2);
        assert!(r.one_minute < r.five_minute && r.five_minute < r.fifteen_minute && r.fifteen_minute < 10.0, "{r:?}");
    }

    #[test]
    fn quantiles_interpolate_as_yammer() {
        let v: Vec<f64> = (1..=10).map(f64::from).collect();
        let cases = [(0.0, 1.0), (0.5, 5.5), (0.75, 8.25), (0.99, 10.0), (0.999, 10.0), (0.05, 1.0)];
        for (q, want) in cases {
            assert!(close(quantile(&v, q), want), "q={q}: {} != {want}", quantile(&v, q));
        }
        assert_eq!(quantile(&[7.0], 0.5), 7.0);
    }

    #[test]
    fn reservoir_keeps_the_recent_samples() {
        let r = Reservoir::default();
        assert_eq!(r.snapshot(), Snapshot::default());
        for i in 0..(RESERVOIR_SIZE + 10) {
            r.record(if i < 10 { 1000.0 } else { 1.0 });
        }
        let s = r.snapshot();
        assert_eq!(s.count, (RESERVOIR_SIZE + 10) as u64);
        assert!(close(s.sum, 10_000.0 + RESERVOIR_SIZE as f64));
        // The ten old slow samples were overwritten.
        assert!(s.quantiles.iter().all(|(_, v)| *v == 1.0), "{s:?}");
    }

    #[test]
    fn exposition_writes_the_text_format() {
        let mut e = Exposition::default();
        e.counter("kafka_server_brokertopicmetrics_bytesin", "bytes", vec![("topic", "a".into())], 12.0);
        e.gauge("kafka_server_replicamanager_leadercount", "leaders", vec![], 3.0);
        e.summary(
            "kafka_network_requestmetrics_totaltimems",
            "ms",
            &vec![("request", "Produce".into())],
            &Snapshot { count: 2, sum: 3.0, quantiles: vec![(0.5, 1.5)] },
        );
        let text = e.encode();
        for line in [
            "# TYPE kafka_server_brokertopicmetrics_bytesin_total counter",
            "kafka_server_brokertopicmetrics_bytesin_total{topic=\"a\"} 12.0",
            "kafka_server_replicamanager_leadercount 3.0",
            "kafka_network_requestmetrics_totaltimems{request=\"Produce\",quantile=\"0.5\"} 1.5",
            "kafka_network_requestmetrics_totaltimems_count{request=\"Produce\"} 2.0",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
    }

    #[test]
    fn meters_carry_kafka_ui_names() {
        let mut e = Exposition::default();
        let m = Meter::default();
        m.mark(3);
        let names = MeterNames {
            count: "kafka_server_brokertopicmetrics_bytesin",
            group: "kafka_server_BrokerTopicMetrics",
            mbean: "BytesInPerSec",
            help: "bytes in",
        };
        e.meter(&names, &vec![("topic", "t".into())], &m, Instant::now());
        let text = e.encode();
        assert!(text.contains("kafka_server_brokertopicmetrics_bytesin_total{topic=\"t\"} 3.0"), "{text}");
        assert!(
            text.contains("kafka_server_BrokerTopicMetrics_FifteenMinuteRate{name=\"BytesInPerSec\",topic=\"t\"} "),
            "{text}"
        );
    }

    #[test]
    fn proc_files_are_read() {
        let stat = "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 9 0 100 0 0";
        assert_eq!(cpu_seconds(stat), Some(3.0));
        assert_eq!(cpu_seconds("garbage"), None);
        assert_eq!(status_kib("Name:\tbroker\nVmRSS:\t  12345 kB\n", "VmRSS:"), Some(12345));
        assert_eq!(status_kib("Name:\tbroker\n", "VmRSS:"), None);
        let limits = "Limit                     Soft Limit           Hard Limit           Units\nMax open files            1024                 524288               files\n";
        assert_eq!(max_open_files(limits), Some(1024));
        let mut e = Exposition::default();
        process(&mut e);
        let text = e.encode();
        assert!(text.contains("process_resident_memory_bytes "), "{text}");
        assert!(text.contains("process_cpu_seconds_total "), "{text}");
    }
}
