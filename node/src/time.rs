/// Wall-clock milliseconds since the Unix epoch, as Kafka timestamps are.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// `ms` (Unix epoch milliseconds) as an ISO-8601 UTC timestamp,
/// `2026-12-07T03:04:05.123Z`, for people to read. Negative values (Kafka's "none") are
/// printed as they are.
pub fn iso8601_ms(ms: i64) -> String {
    if ms < 0 {
        return ms.to_string();
    }
    let (days, ms_of_day) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (year, month, day) = civil_date(days);
    let secs = ms_of_day / 1000;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        ms_of_day % 1000
    )
}

/// The proleptic Gregorian date `days` after 1970-01-01. Counts in 400-year eras of
/// 146,097 days, with years starting on March 1st so that the leap day ends a year.
fn civil_date(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468; // days since 0000-03-01
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The day number (days after 1970-01-01) of a proleptic Gregorian date: the inverse of
/// [`civil_date`], counting in the same March-based 400-year eras.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = year - i64::from(month <= 2);
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let month_from_march = i64::from((month + 9) % 12);
    let day_of_year = (153 * month_from_march + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

fn days_in_month(year: i64, month: u32) -> u32 {
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Exactly `width` ASCII digits as a number in `range`, or an error naming `what`.
fn digits(
    s: &str,
    width: usize,
    range: std::ops::RangeInclusive<u32>,
    what: &str,
) -> Result<u32, String> {
    if s.len() != width || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("the {what} must be {width} digits, not '{s}'"));
    }
    s.parse::<u32>()
        .ok()
        .filter(|n| range.contains(n))
        .ok_or_else(|| format!("{what} {s} is out of range"))
}

/// Milliseconds in a fraction of a second written as its digits after the point (1 to 9
/// of them; beyond milliseconds they are dropped, as a millisecond clock cannot use them).
fn fraction_ms(s: &str) -> Result<i64, String> {
    if s.is_empty() || s.len() > 9 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "'{s}' is not a fraction of a second (1 to 9 digits)"
        ));
    }
    let ms = format!("{s:0<3}");
    ms[..3].parse::<i64>().map_err(|e| e.to_string())
}

/// Parses the time Kafka's tools take (`kafka-consumer-groups.sh --to-datetime`),
/// `YYYY-MM-DDTHH:mm:SS.sss`, into Unix epoch milliseconds. A zone may follow: `Z`,
/// `+01:00`, `+0100` or `+01` (or `-`); without one the time is UTC, as Kafka reads it.
/// The fraction may be left out or be 1 to 9 digits. Times before 1970 are refused:
/// Kafka's offset lookup gives negative times special meanings (latest, earliest).
pub fn parse_iso8601_ms(s: &str) -> Result<i64, String> {
    let bad = |why: String| format!("'{s}' is not a time like 2024-05-01T12:30:00.000: {why}");
    let (date, time) = s
        .split_once('T')
        .ok_or_else(|| bad("no 'T' between the date and the time".into()))?;
    let mut ymd = date.splitn(3, '-');
    let (Some(y), Some(m), Some(d)) = (ymd.next(), ymd.next(), ymd.next()) else {
        return Err(bad("the date must be YYYY-MM-DD".into()));
    };
    let year = i64::from(digits(y, 4, 0..=9999, "year").map_err(bad)?);
    let month = digits(m, 2, 1..=12, "month").map_err(bad)?;
    let day = digits(d, 2, 1..=days_in_month(year, month), "day").map_err(bad)?;
    // The zone starts at the first Z, + or - after the time of day.
    let (clock, zone) = match time.find(['Z', 'z', '+', '-']) {
        Some(i) => time.split_at(i),
        None => (time, ""),
    };
    let (hms, fraction) = match clock.split_once('.') {
        Some((hms, f)) => (hms, fraction_ms(f).map_err(bad)?),
        None => (clock, 0),
    };
    let mut parts = hms.split(':');
    let (Some(h), Some(mi), Some(sec), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("the time of day must be HH:mm:SS".into()));
    };
    let hour = i64::from(digits(h, 2, 0..=23, "hour").map_err(bad)?);
    let minute = i64::from(digits(mi, 2, 0..=59, "minute").map_err(bad)?);
    let second = i64::from(digits(sec, 2, 0..=59, "second").map_err(bad)?);
    let offset_minutes = parse_zone(zone).map_err(bad)?;
    let ms = days_from_civil(year, month, day) * 86_400_000
        + ((hour * 60 + minute - offset_minutes) * 60 + second) * 1000
        + fraction;
    if ms < 0 {
        return Err(bad("times before 1970 have no offsets".into()));
    }
    Ok(ms)
}

/// A zone's offset from UTC in minutes: empty or `Z` (UTC), `+HH:MM`, `+HHMM` or `+HH`.
fn parse_zone(zone: &str) -> Result<i64, String> {
    if zone.is_empty() || zone.eq_ignore_ascii_case("z") {
        return Ok(0);
    }
    let (sign, rest) = match zone.split_at(1) {
        ("+", rest) => (1, rest),
        ("-", rest) => (-1, rest),
        _ => return Err(format!("unknown zone '{zone}'")),
    };
    let (h, m) = match rest.len() {
        2 => (rest, "00"),
        4 => rest.split_at(2),
        5 if rest.as_bytes()[2] == b':' => (&rest[..2], &rest[3..]),
        _ => {
            return Err(format!(
                "the zone must be Z, +HH:MM, +HHMM or +HH, not '{zone}'"
            ))
        }
    };
    let hours = i64::from(digits(h, 2, 0..=18, "zone hour")?);
    let minutes = i64::from(digits(m, 2, 0..=59, "zone minute")?);
    Ok(sign * (hours * 60 + minutes))
}

/// Parses an ISO-8601 duration as Kafka's `--by-duration` takes it (Java's
/// `Duration.parse`), `PnDTnHnMn.nS`, into milliseconds: `P1D`, `PT1H30M`, `PT0.5S`,
/// `P2DT3H4M5S`. Letters may be lower case. Signed parts, which Java allows, are refused:
/// Kafka counts the duration back from now, so a negative one would point past the log.
pub fn parse_iso8601_duration_ms(s: &str) -> Result<i64, String> {
    let bad = |why: &str| format!("'{s}' is not a duration like PT1H or P1DT2H30M: {why}");
    let upper = s.to_ascii_uppercase();
    let rest = upper
        .strip_prefix('P')
        .ok_or_else(|| bad("it must start with P"))?;
    let (days, time) = match rest.split_once('T') {
        Some((_, "")) => return Err(bad("nothing after T")),
        Some((d, t)) => (d, Some(t)),
        None => (rest, None),
    };
    if days.is_empty() && time.is_none() {
        return Err(bad("it names no days, hours, minutes or seconds"));
    }
    let mut ms: i64 = 0;
    let mut add = |number: &str, unit_ms: i64| -> Result<(), String> {
        let (whole, fraction) = match number.split_once('.') {
            // Only seconds may have a fraction, as in Java.
            Some((w, f)) if unit_ms == 1000 => (w, fraction_ms(f).map_err(|e| bad(&e))?),
            Some(_) => return Err(bad("only seconds may have a fraction")),
            None => (number, 0),
        };
        if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad(&format!("'{number}' is not a number")));
        }
        let n: i64 = whole.parse().map_err(|_| bad("too long"))?;
        ms = n
            .checked_mul(unit_ms)
            .and_then(|v| v.checked_add(fraction))
            .and_then(|v| v.checked_add(ms))
            .ok_or_else(|| bad("too long"))?;
        Ok(())
    };
    if !days.is_empty() {
        let n = days
            .strip_suffix('D')
            .ok_or_else(|| bad("the date part may only have days (nD)"))?;
        add(n, 86_400_000)?;
    }
    if let Some(mut t) = time {
        // Hours, minutes and seconds, each at most once and in this order.
        for (unit, unit_ms) in [('H', 3_600_000), ('M', 60_000), ('S', 1000)] {
            if let Some(i) = t.find(unit) {
                add(&t[..i], unit_ms)?;
                t = &t[i + 1..];
            }
        }
        if !t.is_empty() {
            return Err(bad(&format!(
                "'{t}' is not hours (H), minutes (M) or seconds (S) in that order"
            )));
        }
    }
    Ok(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso8601_of_known_instants() {
        assert_eq!(iso8601_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(iso8601_ms(951_868_799_999), "2000-02-29T23:59:59.999Z");
        assert_eq!(iso8601_ms(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(iso8601_ms(4_102_444_800_000), "2100-01-01T00:00:00.000Z");
        assert_eq!(iso8601_ms(-1), "-1");
    }

    #[test]
    fn every_day_of_four_centuries_follows_the_one_before() {
        let mut prev = civil_date(-1);
        for d in 0..146_097 * 2 {
            let (y, m, day) = civil_date(d);
            let next_day = (prev.0, prev.1, prev.2 + 1) == (y, m, day);
            let month_ended = prev.2 == days_in_month(prev.0, prev.1);
            let next_month = (prev.0, prev.1 + 1, 1) == (y, m, day) && month_ended;
            let next_year = (prev.0 + 1, 1, 1) == (y, m, day) && prev.1 == 12 && month_ended;
            assert!(
                next_day || next_month || next_year,
                "{prev:?} -> {:?}",
                (y, m, day)
            );
            prev = (y, m, day);
        }
    }

    #[test]
    fn day_numbers_invert_civil_dates() {
        for d in -146_097..146_097 * 2 {
            let (y, m, day) = civil_date(d);
            assert_eq!(days_from_civil(y, m, day), d, "{y}-{m}-{day}");
        }
    }

    #[test]
    fn kafka_datetimes_parse_with_and_without_zones() {
        let ms = |s: &str| parse_iso8601_ms(s);
        assert_eq!(ms("2023-11-14T22:13:20.123"), Ok(1_700_000_000_123));
        assert_eq!(ms("2023-11-14T22:13:20.123Z"), Ok(1_700_000_000_123));
        assert_eq!(ms("2023-11-14T23:13:20.123+01:00"), Ok(1_700_000_000_123));
        assert_eq!(ms("2023-11-14T23:43:20.123+0130"), Ok(1_700_000_000_123));
        assert_eq!(ms("2023-11-14T20:13:20.123-02"), Ok(1_700_000_000_123));
        assert_eq!(ms("2023-11-14T22:13:20"), Ok(1_700_000_000_000));
        assert_eq!(ms("2023-11-14T22:13:20.1"), Ok(1_700_000_000_100));
        assert_eq!(ms("2023-11-14T22:13:20.123456789"), Ok(1_700_000_000_123));
        assert_eq!(ms("2000-02-29T00:00:00.000"), Ok(951_782_400_000));
        assert_eq!(ms("1970-01-01T00:00:00.000"), Ok(0));
        // Every instant iso8601_ms prints reads back.
        for t in [0, 951_868_799_999, 1_700_000_000_123, 4_102_444_800_000] {
            assert_eq!(ms(&iso8601_ms(t)), Ok(t));
        }
        for bad in [
            "2023-11-14",
            "2023-11-14 22:13:20",
            "2023-02-29T00:00:00",
            "2023-13-01T00:00:00",
            "2023-11-14T24:00:00",
            "2023-11-14T22:13",
            "2023-11-14T22:13:20.",
            "2023-11-14T22:13:20+1",
            "2023-11-14T22:13:20+01:00:00",
            "23-11-14T22:13:20",
            "1969-12-31T23:59:59.999",
            "1970-01-01T00:30:00+01:00",
        ] {
            assert!(ms(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn iso_durations_parse_as_javas() {
        let d = |s: &str| parse_iso8601_duration_ms(s);
        assert_eq!(d("PT1H"), Ok(3_600_000));
        assert_eq!(d("pt30m"), Ok(1_800_000));
        assert_eq!(d("P1D"), Ok(86_400_000));
        assert_eq!(d("P1DT2H3M4.5S"), Ok(93_784_500));
        assert_eq!(d("PT0.25S"), Ok(250));
        assert_eq!(d("PT90M"), Ok(5_400_000));
        assert_eq!(d("P0DT0S"), Ok(0));
        for bad in [
            "",
            "P",
            "PT",
            "1H",
            "PT1",
            "PT1M1H",
            "PT-1H",
            "P1.5D",
            "PT1.5H",
            "P1W",
            "P1DT",
            "PT1H1H",
            "P99999999999999D",
        ] {
            assert!(d(bad).is_err(), "{bad}");
        }
    }
}
