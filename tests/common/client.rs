//! Clients over real TLS sockets: HTTP/1.1, HTTP/2, or raw bytes.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// Which protocol a client offers by ALPN.
#[derive(Clone, Copy)]
pub enum Alpn {
    Http1,
    H2,
}

pub fn tls_client_config(ca: &Path, alpn: Vec<Vec<u8>>) -> Arc<rustls::ClientConfig> {
    let mut config = (*recipient_gateway::tls::client_config(Some(ca)).unwrap()).clone();
    config.alpn_protocols = alpn;
    Arc::new(config)
}

pub async fn tls_connect(addr: SocketAddr, ca: &Path, alpn: Vec<Vec<u8>>) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    TlsConnector::from(tls_client_config(ca, alpn))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("TLS handshake")
}

pub type TestBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

pub fn empty() -> TestBody {
    Full::new(Bytes::new()).boxed()
}

pub fn body(bytes: impl Into<Bytes>) -> TestBody {
    Full::new(bytes.into()).boxed()
}

/// A connected HTTP client over TLS.
pub struct Client {
    sender: Sender,
    /// The protocol ALPN settled on.
    pub alpn: Option<Vec<u8>>,
}

enum Sender {
    H1(hyper::client::conn::http1::SendRequest<TestBody>),
    H2(hyper::client::conn::http2::SendRequest<TestBody>),
}

/// A response read to the end.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {:?}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts the gateway's JSON error shape and returns its code.
    pub fn error_code(&self) -> String {
        let json = self.json();
        let error = &json["error"];
        assert!(
            error["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{json}"
        );
        assert_eq!(
            error["request_id"].as_str(),
            self.header("x-request-id"),
            "error names the request id: {json}"
        );
        error["code"].as_str().expect("error code").to_string()
    }
}

impl Client {
    pub async fn connect(addr: SocketAddr, ca: &Path, alpn: Alpn) -> Client {
        let protocols = match alpn {
            Alpn::Http1 => vec![b"http/1.1".to_vec()],
            Alpn::H2 => vec![b"h2".to_vec()],
        };
        let stream = tls_connect(addr, ca, protocols).await;
        let negotiated = stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
        let io = TokioIo::new(stream);
        let sender = match alpn {
            Alpn::Http1 => {
                let (sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
                tokio::spawn(conn);
                Sender::H1(sender)
            }
            Alpn::H2 => {
                let (sender, conn) =
                    hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                        .await
                        .unwrap();
                tokio::spawn(conn);
                Sender::H2(sender)
            }
        };
        Client {
            sender,
            alpn: negotiated,
        }
    }

    /// Sends a request and returns the response head with its streaming body.
    pub async fn send_streaming(
        &mut self,
        mut request: Request<TestBody>,
    ) -> Result<Response<Incoming>, hyper::Error> {
        match &mut self.sender {
            Sender::H1(sender) => {
                if !request.headers().contains_key("host") {
                    request
                        .headers_mut()
                        .insert("host", "localhost".parse().unwrap());
                }
                sender.ready().await?;
                sender.send_request(request).await
            }
            Sender::H2(sender) => {
                if request.uri().authority().is_none() {
                    let uri = format!("https://localhost{}", request.uri());
                    *request.uri_mut() = uri.parse().unwrap();
                }
                sender.ready().await?;
                sender.send_request(request).await
            }
        }
    }

    /// Whether the gateway has closed the connection.
    pub fn is_closed(&self) -> bool {
        match &self.sender {
            Sender::H1(sender) => sender.is_closed(),
            Sender::H2(sender) => sender.is_closed(),
        }
    }

    pub async fn send(&mut self, request: Request<TestBody>) -> Answer {
        let response = self.send_streaming(request).await.expect("response");
        let (parts, body) = response.into_parts();
        Answer {
            status: parts.status,
            headers: parts.headers,
            body: body.collect().await.expect("body").to_bytes(),
        }
    }

    pub async fn get(&mut self, path: &str, key: Option<&str>) -> Answer {
        let mut request = Request::get(path);
        if let Some(key) = key {
            request = request.header("authorization", format!("Bearer {key}"));
        }
        self.send(request.body(empty()).unwrap()).await
    }
}

/// Reads from a raw stream until EOF or `timeout`, returning what arrived.
pub async fn read_until_close<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
    timeout: Duration,
) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(timeout, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    out
}

pub async fn write_all<S: tokio::io::AsyncWrite + Unpin>(stream: &mut S, bytes: &[u8]) {
    stream.write_all(bytes).await.unwrap();
    stream.flush().await.unwrap();
}

/// Sends a JSON POST with an optional API key.
pub async fn post_json(client: &mut Client, path: &str, key: Option<&str>, body: &Value) -> Answer {
    let mut request = Request::post(path).header("content-type", "application/json");
    if let Some(key) = key {
        request = request.header("authorization", format!("Bearer {key}"));
    }
    client
        .send(request.body(self::body(body.to_string())).unwrap())
        .await
}
