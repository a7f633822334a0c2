//! Plain aligned tables and relative times, for listings.

use chrono::{DateTime, Utc};

/// Prints `header` and `rows` as left-aligned columns separated by at least `gap` spaces.
pub fn print(header: &[&str], rows: &[Vec<String>], gap: usize) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len() - 1;
        let padded: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, cell)| {
                if i == last {
                    cell.to_string()
                } else {
                    format!("{cell:<w$}", w = widths[i] + gap)
                }
            })
            .collect();
        println!("{}", padded.concat());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// `just now`, `5m ago`, `3h ago`, `2d ago`; future times read `in 5m`.
pub fn relative(time: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let seconds = (now - time).num_seconds();
    let (amount, future) = (seconds.unsigned_abs(), seconds < 0);
    let span = match amount {
        0..60 => return "just now".into(),
        60..3_600 => format!("{}m", amount / 60),
        3_600..86_400 => format!("{}h", amount / 3_600),
        _ => format!("{}d", amount / 86_400),
    };
    if future {
        format!("in {span}")
    } else {
        format!("{span} ago")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    #[test]
    fn relative_times() {
        let now = Utc::now();
        assert_eq!(relative(now, now), "just now");
        assert_eq!(relative(now - Duration::minutes(5), now), "5m ago");
        assert_eq!(relative(now - Duration::hours(3), now), "3h ago");
        assert_eq!(relative(now - Duration::days(2), now), "2d ago");
        assert_eq!(relative(now + Duration::days(2), now), "in 2d");
    }
}
