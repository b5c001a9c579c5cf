//! Telling whether a recorded process is still the same live process, from `/proc/<pid>/stat`.
//! Pids are reused, so a record is a pid plus its start time; zombies count as gone.

/// A process as recorded in `state.json`: its pid and its start time (clock ticks after boot).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProcessRef {
    /// Host pid.
    pub pid: i32,
    /// Field 22 of `/proc/<pid>/stat`, which tells a reused pid apart.
    pub start_time: u64,
}

/// The fields of `/proc/<pid>/stat` this module needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    /// One-letter state (`R`, `S`, `Z`, ...).
    pub state: char,
    /// Parent pid.
    pub ppid: i32,
    /// Start time in clock ticks after boot.
    pub start_time: u64,
}

/// Parses a `/proc/<pid>/stat` line. The command name may contain spaces and parentheses, so the
/// fields are counted from the last `)`.
pub fn parse_stat(line: &str) -> Option<Stat> {
    let rest = &line[line.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): state=0, ppid=1, ..., starttime (field 22) = 19.
    Some(Stat {
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        start_time: fields.get(19)?.parse().ok()?,
    })
}

/// Reads a process's stat; `None` when it does not exist.
pub fn stat(pid: i32) -> Option<Stat> {
    let line = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&line)
}

impl ProcessRef {
    /// Records a running process; `None` when it is already gone.
    pub fn of(pid: i32) -> Option<Self> {
        stat(pid).map(|s| Self {
            pid,
            start_time: s.start_time,
        })
    }

    /// True when the recorded process still exists, is not a zombie, and is not a reused pid.
    pub fn is_alive(&self) -> bool {
        matches!(stat(self.pid), Some(s) if s.start_time == self.start_time && !is_dead(s.state))
    }

    /// True when the process has exited but this process (its parent) has not reaped it yet.
    pub fn is_unreaped_child(&self) -> bool {
        matches!(
            stat(self.pid),
            Some(s) if s.start_time == self.start_time
                && is_dead(s.state)
                && u32::try_from(s.ppid).is_ok_and(|ppid| ppid == std::process::id())
        )
    }
}

fn is_dead(state: char) -> bool {
    matches!(state, 'Z' | 'X')
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_with_spaces_and_parens() {
        let line = "4242 (a (b) c) S 17 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 \
                    987654 1000000 100 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        let s = parse_stat(line).unwrap();
        assert_eq!(
            s,
            Stat {
                state: 'S',
                ppid: 17,
                start_time: 987654
            }
        );
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn sees_itself_alive_and_detects_reuse() {
        let me = ProcessRef::of(std::process::id() as i32).unwrap();
        assert!(me.is_alive());
        let reused = ProcessRef {
            start_time: me.start_time + 1,
            ..me
        };
        assert!(!reused.is_alive());
    }
}
