use std::io::Error as IoError;
use std::io::Result as IoResult;
use std::io::{BufReader, BufWriter, ErrorKind, Write};

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::common::HTTPVersion;
use crate::common::Header;
use crate::head::{check_framing, read_head, Head, HeadError};
use crate::limits::{Deadline, Limits, Refusal};
use crate::util::RefinedTcpStream;
use crate::util::{SequentialReader, SequentialReaderBuilder, SequentialWriterBuilder};
use crate::Request;

/// A ClientConnection is an object that will store a socket to a client
/// and return Request objects.
pub struct ClientConnection {
    // address of the client
    remote_addr: IoResult<Option<SocketAddr>>,

    // sequence of Readers to the stream, so that the data is not read in
    //  the wrong order
    source: SequentialReaderBuilder<BufReader<RefinedTcpStream>>,

    // sequence of Writers to the stream, to avoid writing response #2 before
    //  response #1
    sink: SequentialWriterBuilder<BufWriter<RefinedTcpStream>>,

    // Reader to read the next header from
    next_header_source: SequentialReader<BufReader<RefinedTcpStream>>,

    // set to true if we know that the previous request is the last one
    no_more_requests: bool,

    // true if the connection goes through SSL
    secure: bool,

    // the bounds, and how a refusal is answered
    limits: Arc<Limits>,

    // when the head being read must be whole
    deadline: Arc<Deadline>,

    // requests read so far (for `Limits::keepalive_requests`)
    served: u32,

    // set when the connection takes no more requests, by the connection
    // or by the application through a request (`Request::close_connection`)
    closing: Arc<AtomicBool>,
}

/// Error that can happen when reading a request.
#[derive(Debug)]
enum ReadError {
    /// The client is done: nothing to answer.
    Closed,
    /// Refused with this status and message (the headers, when the head
    /// was read whole).
    Refused(u16, &'static str, Vec<Header>),
    /// the client sent an unrecognized `Expect` header
    ExpectationFailed,
    ReadIoError(IoError),
}

impl ClientConnection {
    /// Creates a new `ClientConnection` that takes ownership of the `TcpStream`.
    pub fn new(
        write_socket: RefinedTcpStream,
        mut read_socket: RefinedTcpStream,
        limits: Arc<Limits>,
    ) -> ClientConnection {
        let remote_addr = read_socket.peer_addr();
        let secure = read_socket.secure();
        let deadline = Arc::new(Deadline::new(limits.idle_timeout));
        read_socket.keep(deadline.clone());

        let mut source = SequentialReaderBuilder::new(BufReader::with_capacity(1024, read_socket));
        let first_header = source.next().unwrap();

        ClientConnection {
            source,
            sink: SequentialWriterBuilder::new(BufWriter::with_capacity(1024, write_socket)),
            remote_addr,
            next_header_source: first_header,
            no_more_requests: false,
            secure,
            limits,
            deadline,
            served: 0,
            closing: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Answers a request refused before it was handed on, and ends the
    /// connection (nobody knows where a next request would start).
    fn refuse(
        &mut self,
        status: u16,
        message: &'static str,
        headers: &[Header],
    ) -> Option<Request> {
        let refusal = Refusal {
            status,
            message,
            remote_addr: self.remote_addr.as_ref().ok().copied().flatten(),
            headers,
        };
        let answer = refusal.render(&self.limits);
        if let Some(mut writer) = self.sink.next() {
            let _ = writer.write_all(&answer).and_then(|()| writer.flush());
        }
        self.no_more_requests = true;
        None
    }

    /// true if the connection is HTTPS
    pub fn secure(&self) -> bool {
        self.secure
    }

    /// Reads a request from the stream.
    /// Blocks until the header has been read.
    fn read(&mut self) -> Result<Request, ReadError> {
        // The previous request's answer may have ended the connection.
        self.next_header_source
            .wait_turn()
            .map_err(ReadError::ReadIoError)?;
        if self.closing.load(Ordering::Acquire) {
            return Err(ReadError::Closed);
        }
        let (deadline, within) = (&self.deadline, self.limits.head_timeout);
        let head = read_head(&mut self.next_header_source, &self.limits, || {
            if let Some(within) = within {
                deadline.arm(within);
            }
        });
        let head = head.map_err(|e| match e {
            HeadError::Closed => ReadError::Closed,
            HeadError::Refused(status, message) => ReadError::Refused(status, message, Vec::new()),
            HeadError::Io(e) => ReadError::ReadIoError(e),
        })?;
        if let Err(HeadError::Refused(status, message)) = check_framing(&head, &self.limits) {
            return Err(ReadError::Refused(status, message, head.headers));
        }
        let Head {
            method,
            url: path,
            version,
            headers,
        } = head;

        // building the writer for the request
        let writer = self.sink.next().unwrap();

        // follow-up for next potential request
        let mut data_source = self.source.next().unwrap();
        std::mem::swap(&mut self.next_header_source, &mut data_source);

        // building the next reader
        let request = crate::request::new_request(
            self.secure,
            method,
            path,
            version.clone(),
            headers,
            self.remote_addr.as_ref().ok().copied().flatten(),
            data_source,
            writer,
        )
        .map_err(|e| {
            use crate::request;
            match e {
                request::RequestCreationError::CreationIoError(e) => ReadError::ReadIoError(e),
                request::RequestCreationError::ExpectationFailed => ReadError::ExpectationFailed,
            }
        });
        self.deadline.disarm();

        // return the request
        request
    }
}

impl Iterator for ClientConnection {
    type Item = Request;

    /// Blocks until the next Request is available.
    /// Returns None when no new Requests will come from the client.
    fn next(&mut self) -> Option<Request> {
        // the client sent a "connection: close" header in this previous request
        //  or is using HTTP 1.0, meaning that no new request will come
        if self.no_more_requests || self.closing.load(Ordering::Acquire) {
            return None;
        }

        loop {
            let rq = match self.read() {
                Err(ReadError::Closed) => return None,

                Err(ReadError::Refused(status, message, headers)) => {
                    return self.refuse(status, message, &headers);
                }

                Err(ReadError::ReadIoError(ref err)) if err.kind() == ErrorKind::TimedOut => {
                    return self.refuse(408, "request not received in time", &[]);
                }

                Err(ReadError::ExpectationFailed) => {
                    return self.refuse(417, "expectation not supported", &[]);
                }

                Err(ReadError::ReadIoError(_)) => return None,

                Ok(rq) => rq,
            };

            // updating the status of the connection
            let connection_header = rq
                .headers()
                .iter()
                .find(|h| h.field.equiv("Connection"))
                .map(|h| h.value.as_str());

            let lowercase = connection_header.map(|h| h.to_ascii_lowercase());

            match lowercase {
                Some(ref val) if val.contains("close") => self.no_more_requests = true,
                Some(ref val) if val.contains("upgrade") => self.no_more_requests = true,
                Some(ref val)
                    if !val.contains("keep-alive") && *rq.http_version() == HTTPVersion(1, 0) =>
                {
                    self.no_more_requests = true
                }
                None if *rq.http_version() == HTTPVersion(1, 0) => self.no_more_requests = true,
                _ => (),
            };

            self.served = self.served.saturating_add(1);
            if let Some(max) = self.limits.keepalive_requests {
                if self.served >= max {
                    self.no_more_requests = true;
                }
            }
            if self.no_more_requests {
                self.closing.store(true, Ordering::Release);
            }
            let rq = rq.with_connection(self.closing.clone());

            // returning the request
            return Some(rq);
        }
    }
}
