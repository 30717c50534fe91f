//! Client sessions of handshake-era clients (`initialize` opens one, `DELETE` or idleness ends
//! it): bounded in number, each tied to the caller and the scope that opened it.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
struct ClientSession {
    caller: String,
    scope: String,
    last_used: Instant,
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("the gateway holds {0} sessions, its limit; end idle sessions (DELETE) or retry later")]
pub struct TooManySessions(pub usize);

pub struct Sessions {
    sessions: Mutex<HashMap<String, ClientSession>>,
    max: usize,
    idle: Duration,
}

impl Sessions {
    pub fn new(max: usize, idle: Duration) -> Self {
        Self {
            sessions: Mutex::default(),
            max,
            idle,
        }
    }

    /// Opens a session for `caller` on `scope`; its ID (128 random bits, hex).
    pub fn open(&self, caller: &str, scope: &str) -> Result<String, TooManySessions> {
        let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        if sessions.len() >= self.max {
            return Err(TooManySessions(self.max));
        }
        let mut bytes = [0u8; 16];
        // Without randomness a session ID could be guessed: refuse rather than make one up.
        if getrandom::fill(&mut bytes).is_err() {
            return Err(TooManySessions(sessions.len()));
        }
        let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        sessions.insert(
            id.clone(),
            ClientSession {
                caller: caller.into(),
                scope: scope.into(),
                last_used: Instant::now(),
            },
        );
        Ok(id)
    }

    /// Whether `id` is a live session of this caller on this scope (and marks it used).
    pub fn touch(&self, id: &str, caller: &str, scope: &str) -> bool {
        let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        match sessions.get_mut(id) {
            Some(s) if s.caller == caller && s.scope == scope => {
                s.last_used = Instant::now();
                true
            }
            _ => false,
        }
    }

    /// Ends a session of this caller; whether there was one.
    pub fn close(&self, id: &str, caller: &str) -> bool {
        let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        if sessions.get(id).is_some_and(|s| s.caller == caller) {
            sessions.remove(id);
            return true;
        }
        false
    }

    /// Ends the sessions idle for longer than the limit; their IDs.
    pub fn expire(&self) -> Vec<String> {
        let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        let idle = self.idle;
        let gone: Vec<String> = sessions
            .iter()
            .filter(|(_, s)| s.last_used.elapsed() > idle)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &gone {
            sessions.remove(id);
        }
        gone
    }

    pub fn len(&self) -> usize {
        self.sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_belongs_to_its_caller_and_scope_and_the_count_is_bounded() {
        let s = Sessions::new(2, Duration::from_secs(60));
        let a = s.open("app", "default").unwrap();
        assert_eq!(a.len(), 32);
        assert!(s.touch(&a, "app", "default"));
        assert!(
            !s.touch(&a, "other", "default"),
            "another caller cannot use it"
        );
        assert!(!s.touch(&a, "app", "ocr"), "nor another scope");
        s.open("app", "default").unwrap();
        assert_eq!(s.open("app", "default"), Err(TooManySessions(2)));
        assert!(!s.close(&a, "other"));
        assert!(s.close(&a, "app"));
        assert!(!s.touch(&a, "app", "default"));
    }

    #[test]
    fn idle_sessions_expire() {
        let s = Sessions::new(10, Duration::from_millis(1));
        let a = s.open("app", "default").unwrap();
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(s.expire(), vec![a]);
        assert!(s.is_empty());
    }
}
