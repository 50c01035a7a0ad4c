//! `POST /api/settings/test` and `mailroom check`.

use super::*;

#[tokio::test]
async fn test_route_validates_and_uses_stored_secrets() {
    let rig = Rig::start(SmtpConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let (router, _) = router(dir.path(), rig.args.clone()).await;
    let bad = serde_json::json!({"settings": rig.settings(), "recipient": "nobody"}).to_string();
    let r = call(
        &router,
        request("POST", "/api/settings/test", Some(bad), true),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.json["errors"]["recipient"][0]
        .as_str()
        .unwrap()
        .contains("recipient address"));

    let mut no_secret = rig.settings();
    no_secret.client_secret = None;
    let body = serde_json::json!({"settings": no_secret, "recipient": recipient()}).to_string();
    let r = call(
        &router,
        request("POST", "/api/settings/test", Some(body.clone()), true),
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "no secret stored yet"
    );

    assert_eq!(
        put(&router, &rig.settings(), 0).await.status,
        StatusCode::OK
    );
    let r = call(
        &router,
        request("POST", "/api/settings/test", Some(body), true),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json["ok"], true, "{:?}", r.json);
}

#[tokio::test]
async fn check_command_exit_codes() {
    let rig = Rig::start(SmtpConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("settings.json");
    let run = |settings: serde_json::Value, to: String| {
        std::fs::write(&file, settings.to_string()).unwrap();
        tokio::process::Command::new(env!("CARGO_BIN_EXE_mailroom"))
            .arg("check")
            .arg("--settings")
            .arg(&file)
            .args(["--to", &to])
            .arg("--entra-authority")
            .arg(rig.args.entra_authority.clone().unwrap())
            .arg("--extra-ca-file")
            .arg(rig.args.extra_ca_file.clone().unwrap())
            .output()
    };
    let ok = run(serde_json::to_value(rig.settings()).unwrap(), recipient())
        .await
        .unwrap();
    let out = String::from_utf8_lossy(&ok.stdout);
    assert_eq!(ok.status.code(), Some(0), "{out}");
    assert!(out.contains("token") && out.contains("ok:"), "{out}");
    assert!(!out.contains(SECRET));
    // The settings as a PUT body, or as GET /api/settings and a profile
    // hold them, under "settings": that object is read (it was "it has no
    // field settings"), and it is said so.
    let wrapped = serde_json::json!({"settings": rig.settings(), "version": 3});
    let ok = run(wrapped, recipient()).await.unwrap();
    let (out, err) = (
        String::from_utf8_lossy(&ok.stdout),
        String::from_utf8_lossy(&ok.stderr),
    );
    assert_eq!(ok.status.code(), Some(0), "{out}{err}");
    assert!(err.contains("the object under \"settings\""), "{err}");
    // An Expires date that has passed is told, as the page tells it; the
    // test still runs.
    let mut passed = rig.settings();
    passed.client_secret_expires = Some("2020-01-01".into());
    let ok = run(serde_json::to_value(passed).unwrap(), recipient())
        .await
        .unwrap();
    let out = String::from_utf8_lossy(&ok.stdout);
    assert_eq!(ok.status.code(), Some(0), "{out}");
    assert!(
        out.contains("warning  client_secret_expires: 2020-01-01 has passed"),
        "{out}"
    );

    let mut failing = rig.settings();
    failing.client_secret = Some("wrong-secret".into());
    let failed = run(serde_json::to_value(failing).unwrap(), recipient())
        .await
        .unwrap();
    let out = String::from_utf8_lossy(&failed.stdout);
    assert_eq!(failed.status.code(), Some(1), "{out}");
    assert!(out.contains("AADSTS7000215"), "{out}");

    let mut invalid = rig.settings();
    invalid.tenant_id = Some("nope".into());
    let bad = run(serde_json::to_value(invalid).unwrap(), recipient())
        .await
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("tenant_id"));

    let wrong_type = run(serde_json::json!({"port": "587"}), recipient())
        .await
        .unwrap();
    assert_eq!(wrong_type.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&wrong_type.stderr);
    assert!(
        stderr.contains("The field port has a wrong value"),
        "{stderr}"
    );

    // A misspelt field is named, not ignored, and nothing is sent.
    let mut typo = serde_json::to_value(rig.settings()).unwrap();
    typo["sender_emial"] = typo["sender_email"].clone();
    let sent_before = rig.smtp.messages().len();
    let misspelt = run(typo, recipient()).await.unwrap();
    assert_eq!(misspelt.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&misspelt.stderr);
    assert!(
        stderr.contains("it has no field sender_emial: expected one of")
            && stderr.contains("`sender_email`"),
        "{stderr}"
    );
    assert_eq!(rig.smtp.messages().len(), sent_before);

    let usage = run(
        serde_json::to_value(rig.settings()).unwrap(),
        "not-an-address".into(),
    )
    .await
    .unwrap();
    assert_eq!(usage.status.code(), Some(2));
    // A missing file, and one that never ends (it was read until memory
    // ran out): each refused with exit 2, saying why.
    for (file, says) in [
        (
            "/nonexistent/file.json",
            "cannot read /nonexistent/file.json",
        ),
        ("/dev/zero", "larger than 1 MiB"),
    ] {
        let garbage = tokio::process::Command::new(env!("CARGO_BIN_EXE_mailroom"))
            .args(["check", "--settings", file, "--to"])
            .arg(recipient())
            .kill_on_drop(true)
            .output();
        let garbage = tokio::time::timeout(std::time::Duration::from_secs(30), garbage)
            .await
            .expect("check ends")
            .unwrap();
        assert_eq!(garbage.status.code(), Some(2), "{file}");
        let stderr = String::from_utf8_lossy(&garbage.stderr);
        assert!(stderr.contains(says), "{file}: {stderr}");
    }
    // A file as Windows PowerShell 5.1 writes it, with a UTF-8 byte order
    // mark, is read like any other; a file that is not JSON is said to be so.
    let bom = dir.path().join("bom.json");
    for (bytes, says, not) in [
        (
            [&b"\xEF\xBB\xBF"[..], br#"{"port": "587"}"#].concat(),
            "The field port has a wrong value",
            "not valid JSON",
        ),
        (b"{nope".to_vec(), "it is not valid JSON", "request body"),
        // Windows PowerShell's Out-File and > write UTF-16.
        (
            [&b"\xFF\xFE"[..], &br#"{}"#.iter().flat_map(|b| [*b, 0]).collect::<Vec<u8>>()].concat(),
            "is not a valid SETTINGS file: it is not UTF-8: it is UTF-16 text, as Windows PowerShell's Out-File and > write it; JSON must be UTF-8 (RFC 8259): save the file as UTF-8",
            "request body",
        ),
    ] {
        std::fs::write(&bom, bytes).unwrap();
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_mailroom"))
            .args(["check", "--settings"])
            .arg(&bom)
            .arg("--to")
            .arg(recipient())
            .output()
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says) && !stderr.contains(not), "{stderr}");
    }
    assert_eq!(
        rig.smtp.messages().len(),
        3,
        "only the valid runs sent mail"
    );
}
