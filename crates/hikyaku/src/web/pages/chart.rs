//! The Portal's chart: messages sent, deferred and failed per hour for the
//! last 24 hours and per day for the last 30 days, drawn as SVG on the
//! server (no script). Each bar carries its numbers as a `<title>` (read by
//! screen readers, shown as a tooltip), and a table under each chart gives
//! them all. Hours and days are those of the display time zone.

use crate::store::Store;
use crate::store::stats::Outcomes;
use crate::web::i18n::Tr;

const WIDTH: i64 = 720;
const HEIGHT: i64 = 150;
/// Room for the scale on the left and the labels under the bars.
const LEFT: i64 = 44;
const BOTTOM: i64 = 20;

const HOURS: i64 = 24;
const DAYS: i64 = 30;

/// One stacked bar: failed at the bottom, then deferred, then sent.
pub struct Bar {
    pub label: String,
    pub counts: Outcomes,
    /// The bar's numbers in words (its `<title>` and the table's row).
    pub title: String,
    pub x: i64,
    pub width: i64,
    /// (y, height) of each part.
    pub failed: (i64, i64),
    pub deferred: (i64, i64),
    pub sent: (i64, i64),
    /// Whether its label is written under the axis (every few bars).
    pub show_label: bool,
    pub label_x: i64,
}

pub struct Chart {
    pub id: &'static str,
    pub title: String,
    /// The largest bar's total: the top of the scale.
    pub max: i64,
    pub bars: Vec<Bar>,
    pub totals: Outcomes,
}

/// Everything the Portal's chart include shows.
pub struct PortalChart {
    pub charts: Vec<Chart>,
    pub width: i64,
    pub height: i64,
    pub plot_left: i64,
    pub plot_bottom: i64,
    pub label_y: i64,
    pub sent_label: String,
    pub deferred_label: String,
    pub failed_label: String,
    pub period_label: String,
    pub store_size: String,
}

/// Bytes as a person reads them (KiB, MiB, GiB).
pub fn human_size(bytes: i64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes.max(0) as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < units.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", units[unit])
    }
}

fn bars(tr: &Tr, slots: Vec<(String, Outcomes)>, label_every: usize) -> (Vec<Bar>, i64) {
    let max = slots
        .iter()
        .map(|(_, o)| o.total())
        .max()
        .unwrap_or(0)
        .max(1);
    let n = i64::try_from(slots.len()).unwrap_or(1).max(1);
    let plot_w = WIDTH - LEFT;
    let plot_h = HEIGHT - BOTTOM;
    let slot = plot_w / n;
    let width = (slot * 7 / 10).max(1);
    let scale = |v: i64| v * plot_h / max;
    let bars = slots
        .into_iter()
        .enumerate()
        .map(|(i, (label, counts))| {
            let x = LEFT + i64::try_from(i).unwrap_or(0) * slot + (slot - width) / 2;
            let mut top = plot_h;
            let mut part = |v: i64| {
                let h = scale(v);
                top -= h;
                (top, h)
            };
            let failed = part(counts.failed);
            let deferred = part(counts.deferred);
            let sent = part(counts.sent);
            let title = tr.args(
                "chart-bar",
                &[
                    ("when", label.clone()),
                    ("sent", counts.sent.to_string()),
                    ("deferred", counts.deferred.to_string()),
                    ("failed", counts.failed.to_string()),
                ],
            );
            Bar {
                show_label: i % label_every == 0,
                label_x: x + width / 2,
                label,
                counts,
                title,
                x,
                width,
                failed,
                deferred,
                sent,
            }
        })
        .collect();
    (bars, max)
}

fn totals(slots: &[(String, Outcomes)]) -> Outcomes {
    let mut t = Outcomes::default();
    for (_, o) in slots {
        t.add(o);
    }
    t
}

/// The chart as of `now` (unix seconds), in `offset`'s hours and days.
pub async fn portal_chart(
    store: &Store,
    tr: &Tr,
    now: i64,
    offset: time::UtcOffset,
) -> crate::store::Result<PortalChart> {
    let shift = i64::from(offset.whole_seconds());
    let this_hour = now.div_euclid(3600);
    let today = (now + shift).div_euclid(86_400);
    let first_day = today - (DAYS - 1);
    // The UTC hour in which the first local day begins.
    let from_hour = (first_day * 86_400 - shift).div_euclid(3600);
    let hours = store.hourly_outcomes(from_hour, this_hour).await?;
    let format_hour = time::macros::format_description!("[hour]:00");
    let format_day = time::macros::format_description!("[month]-[day]");
    let local = |unix: i64| crate::clock::from_unix(unix).to_offset(offset);
    let hourly: Vec<(String, Outcomes)> = (this_hour - (HOURS - 1)..=this_hour)
        .map(|h| {
            let counts = hours
                .iter()
                .find(|(k, _)| *k == h)
                .map(|(_, o)| *o)
                .unwrap_or_default();
            let label = local(h * 3600).format(&format_hour).unwrap_or_default();
            (label, counts)
        })
        .collect();
    let daily: Vec<(String, Outcomes)> = (first_day..=today)
        .map(|d| {
            let mut counts = Outcomes::default();
            for (h, o) in &hours {
                if (h * 3600 + shift).div_euclid(86_400) == d {
                    counts.add(o);
                }
            }
            let label = local(d * 86_400 - shift)
                .format(&format_day)
                .unwrap_or_default();
            (label, counts)
        })
        .collect();
    let hourly_totals = totals(&hourly);
    let daily_totals = totals(&daily);
    let (hourly_bars, hourly_max) = bars(tr, hourly, 3);
    let (daily_bars, daily_max) = bars(tr, daily, 5);
    Ok(PortalChart {
        charts: vec![
            Chart {
                id: "chart-hourly",
                title: tr.t("chart-hourly-title"),
                max: hourly_max,
                bars: hourly_bars,
                totals: hourly_totals,
            },
            Chart {
                id: "chart-daily",
                title: tr.t("chart-daily-title"),
                max: daily_max,
                bars: daily_bars,
                totals: daily_totals,
            },
        ],
        width: WIDTH,
        height: HEIGHT,
        plot_left: LEFT,
        plot_bottom: HEIGHT - BOTTOM,
        label_y: HEIGHT - 6,
        sent_label: tr.t("job-state-sent"),
        deferred_label: tr.t("job-state-deferred"),
        failed_label: tr.t("job-state-failed"),
        period_label: tr.t("chart-period"),
        store_size: human_size(store.size_bytes().await?),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;
    use crate::i18n::{Locale, Reason};
    use crate::queue::{JobStore as _, conformance};

    /// Jobs finished on one day show in that day's bar and row, in the
    /// display time zone's day, and nowhere else.
    #[tokio::test]
    async fn a_seeded_day_shows_its_counts() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        let offset = time::UtcOffset::from_hms(9, 0, 0).unwrap();
        // 2026-03-10 12:00 UTC = 21:00 in UTC+9; "now" is three days later.
        let day = 1_773_144_000;
        let now = day + 3 * 86_400;
        let reply = Reason::legacy("250 ok");
        for (i, outcome) in ["sent", "sent", "sent", "failed", "deferred"]
            .iter()
            .enumerate()
        {
            let id = format!("j{i}");
            store.enqueue(&conformance::job(&id), day).await.unwrap();
            store.claim_due_jobs(day, day + 60, 10).await.unwrap();
            match *outcome {
                "sent" => store.mark_sent(&id, None, &reply, day).await.unwrap(),
                "failed" => store.mark_failed(&id, None, &reply, day).await.unwrap(),
                _ => store
                    .defer_job(&id, &reply, day + 60, day, true)
                    .await
                    .unwrap(),
            }
        }
        let tr = Tr::new(Locale::En);
        let chart = portal_chart(&store, &tr, now, offset).await.unwrap();
        let daily = &chart.charts[1];
        assert_eq!(daily.bars.len(), 30);
        let seeded: Vec<&Bar> = daily.bars.iter().filter(|b| b.counts.total() > 0).collect();
        assert_eq!(seeded.len(), 1);
        assert_eq!(seeded[0].label, "03-10");
        assert_eq!(
            (
                seeded[0].counts.sent,
                seeded[0].counts.deferred,
                seeded[0].counts.failed
            ),
            (3, 1, 1)
        );
        assert!(seeded[0].title.contains("Sent 3"), "{}", seeded[0].title);
        // The tallest bar fills the plot.
        assert_eq!(
            seeded[0].failed.1 + seeded[0].deferred.1 + seeded[0].sent.1,
            HEIGHT - BOTTOM
        );
        // Three days ago is outside the last 24 hours.
        assert_eq!(chart.charts[0].totals.total(), 0);
        store.close().await;
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(3 * 1024 * 1024), "3.0 MiB");
    }
}
