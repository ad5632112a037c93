//! Request bodies as the watchdog sends them (chunked, no `Content-Length`) and the size limit.

use std::sync::atomic::Ordering;

use http::StatusCode;

use crate::support::{TestServer, raw_exchange, small_config};

#[tokio::test]
async fn chunked_body_without_content_length_reaches_the_handler() {
    let (server, _probe) = TestServer::ready(small_config()).await;
    let reply = raw_exchange(
        server.addr,
        b"POST /v1/embeddings HTTP/1.1\r\nHost: fn\r\nTransfer-Encoding: chunked\r\n\r\n\
          5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let echoed = reply.json();
    assert_eq!(echoed["body"], "hello world");
    assert_eq!(echoed["body_len"], 11);
}

#[tokio::test]
async fn chunked_body_over_the_limit_gets_413_json_and_never_reaches_the_handler() {
    let (server, probe) = TestServer::ready(small_config()).await;
    // 80 bytes in five chunks against a 64-byte limit.
    let mut request = b"POST / HTTP/1.1\r\nHost: fn\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..5 {
        request.extend_from_slice(b"10\r\n0123456789abcdef\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");

    let reply = raw_exchange(server.addr, &request).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let error = &reply.json()["error"];
    assert_eq!(error["type"], "request_too_large");
    assert!(
        error["message"].as_str().is_some_and(|m| m.contains("64")),
        "{error}"
    );
    assert_eq!(probe.calls.load(Ordering::SeqCst), 0);

    // The server goes on serving.
    let mut client = server.connect().await;
    assert_eq!(client.get("/").await.status, StatusCode::OK);
}

#[tokio::test]
async fn chunked_body_at_the_limit_is_accepted() {
    let (server, _probe) = TestServer::ready(small_config()).await;
    let mut request = b"POST / HTTP/1.1\r\nHost: fn\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..4 {
        request.extend_from_slice(b"10\r\n0123456789abcdef\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let reply = raw_exchange(server.addr, &request).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.json()["body_len"], 64);
}

#[tokio::test]
async fn declared_length_over_the_limit_gets_413_without_reading_the_body() {
    let (server, probe) = TestServer::ready(small_config()).await;
    // No body is ever sent. With `Expect: 100-continue` the server would first answer
    // "100 Continue" had it started reading the body; it must answer 413 straight away.
    let reply = raw_exchange(
        server.addr,
        b"POST / HTTP/1.1\r\nHost: fn\r\nContent-Length: 1000000\r\nExpect: 100-continue\r\n\r\n",
    )
    .await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(reply.json()["error"]["type"], "request_too_large");
    assert_eq!(probe.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn malformed_chunked_body_gets_400_json() {
    let (server, probe) = TestServer::ready(small_config()).await;
    let reply = raw_exchange(
        server.addr,
        b"POST / HTTP/1.1\r\nHost: fn\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text());
    assert_eq!(reply.json()["error"]["type"], "invalid_request_error");
    assert_eq!(probe.calls.load(Ordering::SeqCst), 0);
}

/// A client that uploads the whole body before it reads the answer (as proxies do) must get the
/// 413, not a reset: the rest of the refused body is read and dropped, and the connection stays
/// usable.
#[tokio::test]
async fn a_refused_body_is_drained_so_the_client_reads_413_and_keeps_its_connection() {
    use tokio::io::AsyncWriteExt;

    let (server, probe) = TestServer::ready(small_config()).await;
    for framing in ["content-length", "chunked"] {
        let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let body = vec![b'x'; 100_000];
        let mut request = match framing {
            "content-length" => format!(
                "POST / HTTP/1.1\r\nHost: fn\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .into_bytes(),
            _ => b"POST / HTTP/1.1\r\nHost: fn\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(),
        };
        if framing == "chunked" {
            for chunk in body.chunks(1000) {
                request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                request.extend_from_slice(chunk);
                request.extend_from_slice(b"\r\n");
            }
            request.extend_from_slice(b"0\r\n\r\n");
        } else {
            request.extend_from_slice(&body);
        }
        stream.write_all(&request).await.unwrap();
        let reply = crate::support::read_reply(&mut stream).await;
        assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE, "{framing}");

        stream
            .write_all(b"GET /after HTTP/1.1\r\nHost: fn\r\n\r\n")
            .await
            .unwrap();
        let next = crate::support::read_reply(&mut stream).await;
        assert_eq!(next.status, StatusCode::OK, "{framing}: {}", next.text());
    }
    assert_eq!(probe.calls.load(Ordering::SeqCst), 2);
}
