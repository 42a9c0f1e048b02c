//! What a server bounds, and how it refuses what it will not serve.
//!
//! [`Limits`] gathers every bound of the patched server in one value,
//! given to [`Server::with_limits`](crate::Server::with_limits); its
//! `Default` keeps 0.12's behaviour wherever a bound would change what a
//! well-behaved client sees.
//!
//! A request refused before it reaches the application (a malformed or
//! oversized head, a body that will not be read, a version we do not
//! speak, a slow head, too many connections) is answered through one
//! helper, [`Refusal::answer`]: a short JSON body naming the problem and
//! `Connection: close`, since after such a request nobody knows where the
//! next one would start. An application can render the answer itself
//! (to add its own headers or log it) with [`Limits::on_refusal`].

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::{Header, StatusCode};

/// Renders the whole answer (head and body) to a refused request.
pub type RefusalHook = Arc<dyn Fn(&Refusal<'_>) -> Vec<u8> + Send + Sync>;

/// The bounds a server enforces. See each field for its default.
#[derive(Clone, Default)]
pub struct Limits {
    /// Renders refusals instead of [`Refusal::answer`].
    pub on_refusal: Option<RefusalHook>,
}

impl fmt::Debug for Limits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Limits")
            .field("on_refusal", &self.on_refusal.is_some())
            .finish()
    }
}

/// A request the server answers itself, with an error, and then closes
/// the connection.
#[derive(Debug)]
pub struct Refusal<'a> {
    /// 400, 408, 413, 414, 417, 431, 503 or 505.
    pub status: u16,
    /// What is wrong, in a few words (no client bytes in it).
    pub message: &'static str,
    pub remote_addr: Option<SocketAddr>,
    /// The request's headers when its head was read whole (a refused body
    /// or expectation), else empty.
    pub headers: &'a [Header],
}

impl Refusal<'_> {
    /// The default answer: a JSON body `{"error":"<message>"}` and
    /// `Connection: close`.
    pub fn answer(&self) -> Vec<u8> {
        let body = format!("{{\"error\":\"{}\"}}", self.message);
        format!(
            "HTTP/1.1 {} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
            self.status,
            StatusCode(self.status).default_reason_phrase(),
            body.len(),
            body
        )
        .into_bytes()
    }

    /// The answer as `limits` renders it.
    pub(crate) fn render(&self, limits: &Limits) -> Vec<u8> {
        match &limits.on_refusal {
            Some(hook) => hook(self),
            None => self.answer(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_answer_is_json_and_closes() {
        let r = Refusal {
            status: 431,
            message: "request headers too large",
            remote_addr: None,
            headers: &[],
        };
        let text = String::from_utf8(r.answer()).unwrap();
        assert!(text.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        assert!(text.contains("\r\nConnection: close\r\n"));
        assert!(text.ends_with("\r\n\r\n{\"error\":\"request headers too large\"}"));
    }
}
