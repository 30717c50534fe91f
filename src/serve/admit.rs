//! Which connections are let in: at most `max` open, at most `per_ip` from one address, so one
//! client (or one address behind which many hide) cannot take every connection. Pure counting;
//! a ticket gives its place back when dropped.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

/// Why a connection was not let in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `max` connections are open.
    Full { max: usize },
    /// `per_ip` connections from this address are open.
    PerIp { per_ip: usize },
}

impl Refusal {
    /// The metric label.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::Full { .. } => "limit",
            Refusal::PerIp { .. } => "per_ip",
        }
    }

    /// What the client reads before the connection closes: a complete HTTP/1.1 answer, so a
    /// client library reports a status rather than a reset connection.
    pub fn answer(self) -> String {
        let (status, body) = match self {
            Refusal::Full { max } => (
                "503 Service Unavailable",
                format!("the server holds its maximum of {max} connections; retry shortly\n"),
            ),
            Refusal::PerIp { per_ip } => (
                "429 Too Many Requests",
                format!(
                    "your address holds this server's maximum of {per_ip} connections per address; close some or retry shortly\n"
                ),
            ),
        };
        format!(
            "HTTP/1.1 {status}\r\nretry-after: 1\r\ncontent-type: text/plain\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
    }
}

/// The decision alone: `open` connections in all, `from_ip` of them from the new one's address.
pub fn decide(open: usize, from_ip: usize, max: usize, per_ip: usize) -> Result<(), Refusal> {
    if open >= max {
        Err(Refusal::Full { max })
    } else if from_ip >= per_ip {
        Err(Refusal::PerIp { per_ip })
    } else {
        Ok(())
    }
}

#[derive(Default)]
struct Counts {
    open: usize,
    by_ip: HashMap<IpAddr, usize>,
}

/// The open connections of one listener.
pub struct Admission {
    max: usize,
    per_ip: usize,
    counts: Arc<Mutex<Counts>>,
}

/// One admitted connection; dropping it frees its place.
pub struct Ticket {
    ip: IpAddr,
    counts: Arc<Mutex<Counts>>,
}

impl Admission {
    pub fn new(max: usize, per_ip: usize) -> Self {
        Self {
            max: max.max(1),
            per_ip: per_ip.max(1),
            counts: Arc::default(),
        }
    }

    pub fn admit(&self, ip: IpAddr) -> Result<Ticket, Refusal> {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let from_ip = counts.by_ip.get(&ip).copied().unwrap_or(0);
        decide(counts.open, from_ip, self.max, self.per_ip)?;
        counts.open += 1;
        *counts.by_ip.entry(ip).or_default() += 1;
        Ok(Ticket {
            ip,
            counts: self.counts.clone(),
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .open
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        counts.open = counts.open.saturating_sub(1);
        if let Some(n) = counts.by_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.by_ip.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_comes_before_the_per_address_cap_and_places_come_back() {
        assert_eq!(decide(10, 0, 10, 4), Err(Refusal::Full { max: 10 }));
        assert_eq!(decide(5, 4, 10, 4), Err(Refusal::PerIp { per_ip: 4 }));
        assert_eq!(decide(5, 3, 10, 4), Ok(()));

        let admission = Admission::new(3, 2);
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let first = admission.admit(a).unwrap();
        let _second = admission.admit(a).unwrap();
        assert_eq!(
            admission.admit(a).err(),
            Some(Refusal::PerIp { per_ip: 2 }),
            "a third from one address"
        );
        let _third = admission.admit(b).unwrap();
        assert_eq!(admission.admit(b).err(), Some(Refusal::Full { max: 3 }));
        drop(first);
        assert_eq!(admission.open(), 2);
        assert!(admission.admit(b).is_ok(), "a place freed is taken again");
    }

    #[test]
    fn a_refusal_is_a_whole_http_answer_with_retry_after() {
        let answer = Refusal::PerIp { per_ip: 7 }.answer();
        assert!(answer.starts_with("HTTP/1.1 429 Too Many Requests\r\n"));
        assert!(answer.contains("retry-after: 1\r\n"));
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}", body.len())));
        assert!(body.contains("7 connections per address"));
    }
}
