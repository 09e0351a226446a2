//! Human-readable durations, as the command line and profiles write them.

/// Why a duration did not parse; each names the text it was given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("'{0}' is not a duration (use 30s, 2m, 500ms)")]
    NotADuration(String),
    #[error("'{0}' has an unknown unit (use ms, s, m or h)")]
    UnknownUnit(String),
    #[error("'{0}' is out of range")]
    OutOfRange(String),
}

/// Parses "30s", "2m", "500ms", "1h" or plain seconds.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, DurationError> {
    let t = s.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| DurationError::NotADuration(s.to_string()))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(DurationError::UnknownUnit(s.to_string())),
    };
    if !(0.0..=86_400.0 * 7.0).contains(&secs) {
        return Err(DurationError::OutOfRange(s.to_string()));
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

/// A size in the shortest exact spelling that `parse_size` reads back:
/// `1G`, `256M`, `64K`, or bytes.
pub fn size_text(bytes: u64) -> String {
    for (unit, shift) in [("T", 40), ("G", 30), ("M", 20), ("K", 10)] {
        if bytes >= 1 << shift && bytes.is_multiple_of(1u64 << shift) {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    bytes.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(parse_duration("x").is_err());
        assert!(parse_duration("3 weeks").is_err());
        assert!(parse_duration("9999h").is_err());
    }

    #[test]
    fn sizes_print_as_they_are_typed() {
        use iolab_storage::backstore::parse_size;
        assert_eq!(size_text(1 << 30), "1G");
        assert_eq!(size_text(64 << 20), "64M");
        assert_eq!(size_text(1536 << 20), "1536M");
        assert_eq!(size_text(4096), "4K");
        assert_eq!(size_text(1000), "1000");
        for n in [1 << 30, 3 << 40, 4096, 1000, 1536 << 20] {
            assert_eq!(parse_size(&size_text(n)).unwrap(), n);
        }
    }
}
