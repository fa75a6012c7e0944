//! In-process tests of the echo backend through the harness HTTP client (loopback only).

use std::time::{Duration, Instant};

use portico_integration::echo::grpc::SERVICE;
use portico_integration::echo::{EchoConfig, spawn};
use portico_integration::harness::http::{HttpRequest, grpc_call, send};

const TIMEOUT: Duration = Duration::from_secs(5);

fn config() -> EchoConfig {
    let mut config = EchoConfig::new("web-7d9f-0", "apps");
    config.service = "web".into();
    config
}

#[tokio::test]
async fn echoes_the_request_over_http1_and_h2c() {
    let echo = spawn(config()).await.unwrap();
    let request = HttpRequest::get("/foo?a=b")
        .host("example.com")
        .header("x-multi", "1")
        .header("X-Multi", "2");
    let response = send(echo.addr(), &request, TIMEOUT).await.unwrap();
    assert_eq!(response.status, 200);
    let seen = response.echo().unwrap();
    assert_eq!(seen.path, "/foo?a=b");
    assert_eq!(seen.host, "example.com");
    assert_eq!(seen.method, "GET");
    assert_eq!(seen.proto, "HTTP/1.1");
    assert_eq!(seen.pod, "web-7d9f-0");
    assert_eq!(seen.namespace, "apps");
    assert_eq!(seen.service, "web");
    assert_eq!(
        seen.headers.get("X-Multi"),
        Some(&vec!["1".to_string(), "2".to_string()])
    );
    assert!(echo.saw_request_to("/foo?a=b"));

    let mut h2 = HttpRequest::get("/h2").host("h2.example.com");
    h2.http2 = true;
    let seen = send(echo.addr(), &h2, TIMEOUT)
        .await
        .unwrap()
        .echo()
        .unwrap();
    assert_eq!(
        (seen.proto.as_str(), seen.host.as_str(), seen.path.as_str()),
        ("HTTP/2.0", "h2.example.com", "/h2")
    );
}

#[tokio::test]
async fn sets_response_headers_and_status() {
    let echo = spawn(config()).await.unwrap();
    let request =
        HttpRequest::get("/").header("X-Echo-Set-Header", "X-Foo:bar,X-Foo: baz,X-Other:1");
    let response = send(echo.addr(), &request, TIMEOUT).await.unwrap();
    assert_eq!(response.header("x-foo").as_deref(), Some("bar,baz"));
    assert_eq!(response.header("x-other").as_deref(), Some("1"));
    let response = send(echo.addr(), &HttpRequest::get("/status/418"), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(response.status, 418);
}

#[tokio::test]
async fn delays_when_asked() {
    let echo = spawn(config()).await.unwrap();
    let start = Instant::now();
    let response = send(echo.addr(), &HttpRequest::get("/?delay=200ms"), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(response.status, 200);
    // Not a timing assertion on the server: the answer cannot precede the requested delay.
    assert!(start.elapsed() >= Duration::from_millis(200));
    let bad = send(echo.addr(), &HttpRequest::get("/?delay=soon"), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(bad.status, 500);
}

#[tokio::test]
async fn retry_endpoint_fails_first_attempts() {
    let echo = spawn(config()).await.unwrap();
    let path = "/retry/x?responseCode=503&succeedAfter=2&uuid=u1";
    for _ in 0..2 {
        assert_eq!(
            send(echo.addr(), &HttpRequest::get(path), TIMEOUT)
                .await
                .unwrap()
                .status,
            503
        );
    }
    assert_eq!(
        send(echo.addr(), &HttpRequest::get(path), TIMEOUT)
            .await
            .unwrap()
            .status,
        200
    );
    // Without responseCode the connection is reset instead of answered.
    let reset = "/retry/y?succeedAfter=1&uuid=u2";
    assert!(
        send(echo.addr(), &HttpRequest::get(reset), TIMEOUT)
            .await
            .is_err()
    );
    assert_eq!(
        send(echo.addr(), &HttpRequest::get(reset), TIMEOUT)
            .await
            .unwrap()
            .status,
        200
    );
}

#[tokio::test]
async fn grpc_echo_reports_method_and_pod() {
    let echo = spawn(config()).await.unwrap();
    let method = format!("/{SERVICE}/EchoTwo");
    let metadata = vec![("x-grpc-test".to_string(), "1".to_string())];
    let result = grpc_call(
        echo.addr(),
        Some("grpc.example.com"),
        &method,
        &metadata,
        TIMEOUT,
    )
    .await
    .unwrap();
    assert_eq!(result.grpc_status, Some(0));
    let assertions = result.response.unwrap().assertions.unwrap();
    assert_eq!(assertions.fully_qualified_method, method);
    assert_eq!(assertions.authority, "grpc.example.com");
    assert_eq!(assertions.context.unwrap().pod, "web-7d9f-0");
    assert!(
        assertions
            .headers
            .iter()
            .any(|h| h.key == "x-grpc-test" && h.value == "1")
    );

    let three = grpc_call(
        echo.addr(),
        None,
        &format!("/{SERVICE}/EchoThree"),
        &[],
        TIMEOUT,
    )
    .await
    .unwrap();
    assert_eq!(three.grpc_status, Some(12));
}

#[tokio::test]
async fn tls_echo_reports_sni_over_http1_and_h2() {
    use portico_integration::conformance::certs::self_signed;
    use portico_integration::echo::EchoTls;
    use portico_integration::harness::tls::TlsOptions;

    let dir = tempfile::tempdir().unwrap();
    let (cert_pem, key_pem) = self_signed(dir.path(), "*", &["DNS:*.org"]).unwrap();
    let mut config = config();
    config.tls = Some(EchoTls {
        cert_pem: cert_pem.clone(),
        key_pem,
        client_ca_pem: None,
    });
    let echo = spawn(config).await.unwrap();
    for http2 in [false, true] {
        let mut request = HttpRequest::get("/tls").host("example.org");
        request.http2 = http2;
        request.tls = Some(TlsOptions {
            trusted_cert_pem: cert_pem.clone(),
            sni: "example.org".into(),
            http2,
            client_cert: None,
        });
        let seen = send(echo.addr(), &request, TIMEOUT)
            .await
            .unwrap()
            .echo()
            .unwrap();
        assert_eq!(seen.sni, "example.org");
        assert_eq!(seen.proto, if http2 { "HTTP/2.0" } else { "HTTP/1.1" });
    }
    // A client that trusts another certificate refuses the connection.
    let (other, _) = self_signed(dir.path(), "other", &[]).unwrap();
    let mut request = HttpRequest::get("/tls");
    request.tls = Some(TlsOptions {
        trusted_cert_pem: other,
        sni: "example.org".into(),
        http2: false,
        client_cert: None,
    });
    assert!(send(echo.addr(), &request, TIMEOUT).await.is_err());
}

#[tokio::test]
async fn tcp_echo_answers_plain_and_over_tls() {
    use portico_integration::conformance::certs::setup_objects;
    use portico_integration::echo::EchoTls;
    use portico_integration::echo::tcp::spawn_tcp;
    use portico_integration::harness::tcp::tcp_probe;
    use portico_integration::harness::tls::TlsOptions;

    let plain = spawn_tcp(config()).await.unwrap();
    let probe = tcp_probe(plain.addr(), None, TIMEOUT).await.unwrap();
    assert!(!probe.backend_tls);
    assert_eq!(probe.assertions.pod, "web-7d9f-0");
    assert_eq!(probe.assertions.namespace, "apps");

    // Over TLS with a CA-signed certificate, trusted through the CA.
    let dir = tempfile::tempdir().unwrap();
    let setup = setup_objects(dir.path()).unwrap();
    let (cert_pem, key_pem) = setup
        .secret(
            "gateway-conformance-infra",
            "tls-passthrough-checks-certificate",
        )
        .unwrap()
        .clone();
    let mut tls_config = config();
    tls_config.tls = Some(EchoTls {
        cert_pem,
        key_pem,
        client_ca_pem: None,
    });
    let tls = spawn_tcp(tls_config).await.unwrap();
    let options = TlsOptions {
        trusted_cert_pem: setup.client_trust_pem(),
        sni: "abc.example.com".into(),
        http2: false,
        client_cert: None,
    };
    let probe = tcp_probe(tls.addr(), Some(&options), TIMEOUT)
        .await
        .unwrap();
    assert!(probe.backend_tls);
    assert_eq!(probe.assertions.tls.unwrap().server_name, "abc.example.com");
    // The CA signed the certificate for abc.example.com only.
    let wrong_name = TlsOptions {
        sni: "other.test".into(),
        ..options
    };
    assert!(
        tcp_probe(tls.addr(), Some(&wrong_name), TIMEOUT)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn udp_echo_answers_each_datagram() {
    use portico_integration::echo::udp::spawn_udp;
    use portico_integration::harness::udp::udp_exchange;

    let echo = spawn_udp(config()).await.unwrap();
    let answer = udp_exchange(echo.addr(), "hello", TIMEOUT).await.unwrap();
    assert_eq!(answer.request, "hello");
    assert_eq!(
        (
            answer.pod.as_str(),
            answer.namespace.as_str(),
            answer.service.as_str()
        ),
        ("web-7d9f-0", "apps", "web")
    );
}

#[tokio::test]
async fn websocket_frames_come_back() {
    use portico_integration::echo::ws::{Frame, OP_BINARY, OP_TEXT};
    use portico_integration::harness::ws::websocket_echo;

    let echo = spawn(config()).await.unwrap();
    let frames = [
        Frame {
            opcode: OP_TEXT,
            payload: b"Websocket Support!".to_vec(),
        },
        Frame {
            opcode: OP_BINARY,
            payload: vec![1, 2, 3, 4, 5, 6, 7],
        },
    ];
    let host = echo.addr().to_string();
    websocket_echo(
        echo.addr(),
        &host,
        "/ws",
        "ws://gateway/test",
        &frames,
        TIMEOUT,
    )
    .await
    .unwrap();
    assert!(echo.saw_request_to("/ws"));
}
