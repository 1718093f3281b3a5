//! Material files: upload with the API (multipart), re-upload after 补正 keeping both versions,
//! preview and download with exactly the instance's read rights, and every refused upload
//! (disguised, oversized, empty, no file, a material the workflow does not list, one nobody is
//! waiting for) changing nothing.

mod api_common;

use api_common::{Resp, Server, multipart, server_with, server_with_file_dir};
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::json;
use sha2::Digest as _;

/// A refused upload: who, which material, the parts, the status and code expected.
type Case<'a> = (
    &'a str,
    &'a str,
    Vec<(&'a str, &'a str, &'a [u8])>,
    StatusCode,
    &'a str,
);

const PDF: &[u8] = b"%PDF-1.7\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n";
const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR";

async fn upload(
    s: &Server,
    user: &str,
    inst: &str,
    material: &str,
    parts: &[(&str, &str, &[u8])],
) -> Resp {
    s.upload(user, inst, material, parts).await
}

async fn version(s: &Server, inst: &str) -> i64 {
    s.req(
        "GET",
        &format!("/api/instances/{inst}"),
        Some("zhao"),
        None,
        &[],
    )
    .await
    .json["version"]
        .as_i64()
        .expect("version")
}

fn small_files() -> shenpi_web::server::security::Settings {
    shenpi_web::server::security::Settings {
        max_file_bytes: 1 << 20,
        ..Default::default()
    }
}

async fn files_server(name: &str) -> Server {
    with_outsider(server_with(name, Default::default(), small_files()).await).await
}

/// An approver of a department the provincial workflow does not involve (市气象局).
async fn with_outsider(mut s: Server) -> Server {
    s.add_user("qian", Some("qx"), &["approver"]).await;
    s
}

#[tokio::test]
async fn upload_reupload_after_return_preview_and_download_rights() {
    files_flow(&files_server("files-flow").await).await;
}

/// The same, with the files in a directory (`serve --file-dir`): each stored once as a file
/// named by its hash, none in the database's chunks.
#[tokio::test]
async fn upload_reupload_preview_and_rights_with_a_files_directory() {
    let s = with_outsider(server_with_file_dir("files-dir", small_files()).await).await;
    files_flow(&s).await;
    let root = s.dir.join("files");
    let mut stored: Vec<String> = std::fs::read_dir(&root)
        .expect("files directory")
        .flatten()
        .filter(|e| e.file_name() != ".incoming")
        .flat_map(|e| std::fs::read_dir(e.path()).expect("subdir").flatten())
        .map(|f| f.file_name().to_string_lossy().into_owned())
        .collect();
    stored.sort();
    let mut expected: Vec<String> = [PDF, PNG, SECOND_PDF]
        .iter()
        .map(|b| format!("{:x}", sha2::Sha256::digest(b)))
        .collect();
    expected.sort();
    assert_eq!(stored, expected);
    assert_eq!(stored_content(&s).await, (3, 0), "rows, and no chunks");
}

/// Files are named only through the upload route: a `supply_material` command listing a hash
/// (here of a file another instance holds, which would then be served through this one) is
/// refused and records nothing.
#[tokio::test]
async fn a_command_cannot_name_files_by_hash() {
    let s = files_server("files-by-hash").await;
    let (a, _) = s.returned_for_eia().await;
    let up = upload(&s, "chen", &a, "eia", &[("file", "环评批复.pdf", PDF)]).await;
    assert_eq!(up.status, StatusCode::CREATED, "{}", up.text);
    let hash = up.json["files"][0]["sha256"]
        .as_str()
        .expect("hash")
        .to_string();
    let (b, _) = s.returned_for_eia().await;
    let before = version(&s, &b).await;
    let r = s
        .req(
            "POST",
            &format!("/api/instances/{b}/commands"),
            Some("chen"),
            Some(json!({"type": "supply_material", "material": "eia",
                        "files": [{"sha256": hash, "name": "环评批复.pdf", "size": PDF.len()}]})),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert_eq!(r.json["error"], "files_by_upload_only");
    assert!(
        r.json["message"]
            .as_str()
            .is_some_and(|m| m.contains("上传接口")),
        "{}",
        r.text
    );
    assert_eq!(version(&s, &b).await, before, "nothing recorded");
    let dl = s
        .req(
            "GET",
            &format!("/api/instances/{b}/files/{hash}"),
            Some("chen"),
            None,
            &[],
        )
        .await;
    assert_eq!(dl.status, StatusCode::NOT_FOUND, "{}", dl.text);
}

const SECOND_PDF: &[u8] = b"%PDF-1.7\n% second version\n%%EOF\n";

async fn files_flow(s: &Server) {
    let (inst, intake) = s.returned_for_eia().await;

    let up = upload(
        s,
        "chen",
        &inst,
        "eia",
        &[("file", "环评批复.pdf", PDF), ("file", "附图.png", PNG)],
    )
    .await;
    assert_eq!(up.status, StatusCode::CREATED, "{}", up.text);
    let first = up.json["files"][0]["sha256"]
        .as_str()
        .expect("hash")
        .to_string();
    assert_eq!(first.len(), 64);
    assert_eq!(up.json["files"][0]["size"], PDF.len());

    // 补正 again; the re-upload is a second version, the first kept.
    s.send_return(&inst, intake).await;
    let pdf2 = SECOND_PDF;
    let up2 = upload(
        s,
        "chen",
        &inst,
        "eia",
        &[("file", "环评批复（修改）.pdf", pdf2)],
    )
    .await;
    assert_eq!(up2.status, StatusCode::CREATED, "{}", up2.text);
    let list = s
        .req(
            "GET",
            &format!("/api/instances/{inst}/materials/eia/files"),
            Some("zhang"),
            None,
            &[],
        )
        .await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.text);
    let versions = list.json.as_array().expect("versions");
    assert_eq!(versions.len(), 2, "{}", list.text);
    assert_eq!(versions[0]["version"], 1);
    assert_eq!(versions[0]["by"], "chen");
    assert_eq!(versions[0]["files"].as_array().map(Vec::len), Some(2));
    assert_eq!(versions[1]["version"], 2);

    // Preview: a PDF inline, with its name in RFC 5987 form; download: attachment.
    let path = format!("/api/instances/{inst}/files/{first}");
    let view = s.req("GET", &path, Some("zhang"), None, &[]).await;
    assert_eq!(view.status, StatusCode::OK, "{}", view.text);
    assert_eq!(view.headers[header::CONTENT_TYPE], "application/pdf");
    let disp = view.headers[header::CONTENT_DISPOSITION]
        .to_str()
        .expect("ascii");
    assert!(disp.starts_with("inline;"), "{disp}");
    assert!(disp.contains("filename*=UTF-8''%E7%8E%AF"), "{disp}");
    assert_eq!(view.text.as_bytes(), PDF);
    let dl = s
        .req(
            "GET",
            &format!("{path}?download=true"),
            Some("chen"),
            None,
            &[],
        )
        .await;
    assert_eq!(dl.status, StatusCode::OK);
    assert!(
        dl.headers[header::CONTENT_DISPOSITION]
            .to_str()
            .expect("ascii")
            .starts_with("attachment;")
    );

    // Another department's approver and another applicant: 403, nothing about the file.
    for who in ["qian", "liu"] {
        let r = s.req("GET", &path, Some(who), None, &[]).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{who}: {}", r.text);
        assert!(
            !r.text.contains("环评") && !r.text.contains(&first),
            "{}",
            r.text
        );
        let l = s
            .req(
                "GET",
                &format!("/api/instances/{inst}/materials/eia/files"),
                Some(who),
                None,
                &[],
            )
            .await;
        assert_eq!(l.status, StatusCode::FORBIDDEN);
    }
    // A hash the instance's events do not name is 404 even for a reader.
    let other = s
        .req(
            "GET",
            &format!("/api/instances/{inst}/files/{}", "0".repeat(64)),
            Some("zhang"),
            None,
            &[],
        )
        .await;
    assert_eq!(other.status, StatusCode::NOT_FOUND);

    // The audit trail has the uploads and downloads, the refused one too.
    // (The trail is written behind the request: wait for it.)
    let mut actions: Vec<String> = Vec::new();
    for _ in 0..100 {
        let d = s
            .req(
                "GET",
                &format!("/api/instances/{inst}"),
                Some("zhao"),
                None,
                &[],
            )
            .await;
        actions = d.json["audit"]
            .as_array()
            .expect("audit")
            .iter()
            .map(|a| format!("{} {} {}", a["user"], a["action"], a["outcome"]))
            .collect();
        if actions.iter().any(|a| a.contains("qian")) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(
        actions
            .iter()
            .any(|a| a.contains("upload_file") && a.contains("ok")),
        "{actions:?}"
    );
    assert!(
        actions
            .iter()
            .any(|a| a.contains("download_file") && a.contains("ok")),
        "{actions:?}"
    );
    assert!(
        actions
            .iter()
            .any(|a| a.contains("qian") && a.contains("download_file") && a.contains("forbidden")),
        "{actions:?}"
    );

    // The instance page lists each version with who, size and hash, and links to the files.
    let page = api_common::Browser::login(s, "zhang")
        .await
        .get(&format!("/instances/{inst}"))
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.text.contains("环评批复（修改）.pdf"),
        "page lists the files"
    );
    assert!(page.text.contains(&first[..12]));
    assert!(
        page.text
            .contains(&format!("/api/instances/{inst}/files/{first}"))
    );
}

#[tokio::test]
async fn refused_uploads_say_why_and_change_nothing() {
    let s = files_server("files-refused").await;
    let (inst, _) = s.returned_for_eia().await;
    let before = version(&s, &inst).await;
    let exe: &[u8] = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff";
    let big = vec![b'%'; (1 << 20) + 10];
    let mut big_pdf = b"%PDF-1.7\n".to_vec();
    big_pdf.extend_from_slice(&big);
    let cases: Vec<Case> = vec![
        (
            "chen",
            "eia",
            vec![("file", "环评.pdf", exe)],
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "file_kind_refused",
        ),
        (
            "chen",
            "eia",
            vec![("file", "环评.pdf", &big_pdf)],
            StatusCode::PAYLOAD_TOO_LARGE,
            "file_too_large",
        ),
        (
            "chen",
            "eia",
            vec![("file", "空.pdf", b"")],
            StatusCode::UNPROCESSABLE_ENTITY,
            "file_empty",
        ),
        (
            "chen",
            "eia",
            vec![("note", "x.txt", b"hello")],
            StatusCode::UNPROCESSABLE_ENTITY,
            "no_file",
        ),
        (
            "chen",
            "no_such_material",
            vec![("file", "a.pdf", PDF)],
            StatusCode::UNPROCESSABLE_ENTITY,
            "material_not_listed",
        ),
        (
            "chen",
            "proposal",
            vec![("file", "a.pdf", PDF)],
            StatusCode::UNPROCESSABLE_ENTITY,
            "material_not_expected",
        ),
        (
            "liu",
            "eia",
            vec![("file", "a.pdf", PDF)],
            StatusCode::FORBIDDEN,
            "forbidden",
        ),
    ];
    for (user, material, parts, status, code) in cases {
        let r = upload(&s, user, &inst, material, &parts).await;
        assert_eq!(r.status, status, "{code}: {}", r.text);
        assert_eq!(r.json["error"], code, "{}", r.text);
        let msg = r.json["message"].as_str().unwrap_or("");
        assert!(
            msg.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c)),
            "{msg}"
        );
        assert_eq!(
            version(&s, &inst).await,
            before,
            "{code} changed the instance"
        );
    }
    // The disguised executable's refusal says what it is.
    let r = upload(&s, "chen", &inst, "eia", &[("file", "环评.pdf", exe)]).await;
    assert!(
        r.json["message"]
            .as_str()
            .unwrap_or("")
            .contains("可执行程序"),
        "{}",
        r.text
    );
    // Nothing refused was stored: the material has no versions.
    let list = s
        .req(
            "GET",
            &format!("/api/instances/{inst}/materials/eia/files"),
            Some("chen"),
            None,
            &[],
        )
        .await;
    assert_eq!(list.json, json!([]), "{}", list.text);
}

#[tokio::test]
async fn the_verification_task_shows_the_files_supplied_against_its_promise() {
    let s = files_server("files-verify").await;
    let inst = s.pre_approved_eia().await;
    let up = upload(&s, "chen", &inst, "eia", &[("file", "环评批复.pdf", PDF)]).await;
    assert_eq!(up.status, StatusCode::CREATED, "{}", up.text);
    let sha = up.json["files"][0]["sha256"]
        .as_str()
        .expect("hash")
        .to_string();
    let verify = s.task_at(&inst, "intake").await.expect("verification task");
    let page = api_common::Browser::login(&s, "zhang")
        .await
        .get(&format!("/instances/{inst}/tasks/{verify}"))
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(page.text.contains("待核验的材料文件"));
    assert!(
        page.text
            .contains(&format!("/api/instances/{inst}/files/{sha}"))
    );
    assert!(page.text.contains("环评批复.pdf"));
}

#[tokio::test]
async fn the_instance_page_form_uploads_without_script() {
    let s = files_server("files-page").await;
    let (inst, _) = s.returned_for_eia().await;
    let b = api_common::Browser::login(&s, "chen").await;
    let page = b.get(&format!("/instances/{inst}")).await;
    assert_eq!(page.status, StatusCode::OK);
    let action = format!("/instances/{inst}/materials/eia/files");
    assert!(page.text.contains(&action), "no upload form for the EIA");
    assert!(page.text.contains("multipart/form-data"));
    let csrf = api_common::between(&page.text, "name=\"csrf\" value=\"", "\"")
        .expect("csrf")
        .to_string();
    let post = |parts: Vec<(&'static str, &'static str, Vec<u8>)>| {
        let parts: Vec<(&str, &str, Vec<u8>)> = parts;
        let refs: Vec<(&str, &str, &[u8])> = parts
            .iter()
            .map(|(a, n, d)| (*a, *n, d.as_slice()))
            .collect();
        let (ctype, body) = multipart(&refs);
        Request::post(&action)
            .header(header::COOKIE, &b.cookie)
            .header(header::CONTENT_TYPE, ctype)
            .body(Body::from(body))
            .expect("request")
    };
    // Without the form's token: refused, nothing stored.
    let r = s.send(post(vec![("file", "a.pdf", PDF.to_vec())])).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    let r = s
        .send(post(vec![
            ("csrf", "", csrf.clone().into_bytes()),
            ("file", "环评批复.pdf", PDF.to_vec()),
        ]))
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    let page = b.get(&format!("/instances/{inst}")).await;
    assert!(page.text.contains("环评批复.pdf"));
}

/// What the database holds of file content: (files recorded whole, chunks).
async fn stored_content(s: &Server) -> (i64, i64) {
    let url = format!("sqlite://{}", s.dir.join("t.db").display());
    let pool = sqlx::SqlitePool::connect(&url).await.expect("open");
    let count = |sql: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(&pool)
                .await
                .expect("count")
        }
    };
    (
        count("SELECT COUNT(*) FROM material_files").await,
        count("SELECT COUNT(*) FROM material_file_chunks").await,
    )
}

/// The connection drops halfway through a file (a browser closed, a crash of the client, a
/// proxy cut): nothing of it is stored, no event names it, and the applicant can upload again.
#[tokio::test]
async fn an_upload_cut_off_halfway_stores_nothing_and_can_be_sent_again() {
    let s = files_server("files-cut").await;
    let (inst, _) = s.returned_for_eia().await;
    let before = version(&s, &inst).await;
    let (ctype, whole) = multipart(&[("file", "环评批复.pdf", PDF)]);
    let mut half = whole[..whole.len() - 20].to_vec();
    half.extend_from_slice(&[b'x'; 300 << 10]);
    let pieces: Vec<Result<Vec<u8>, std::io::Error>> = vec![
        Ok(half),
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "connection reset by peer",
        )),
    ];
    let req = Request::post(format!("/api/instances/{inst}/materials/eia/files"))
        .header(header::CONTENT_TYPE, ctype)
        .header(
            header::AUTHORIZATION,
            format!("Bearer {}", s.tokens.get("chen").expect("token")),
        )
        .body(Body::from_stream(futures_util::stream::iter(pieces)))
        .expect("request");
    let r = s.send(req).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_eq!(r.json["error"], "bad_multipart", "{}", r.text);
    assert_eq!(version(&s, &inst).await, before, "no event recorded");
    assert_eq!(stored_content(&s).await, (0, 0), "no content kept");
    let list = s
        .req(
            "GET",
            &format!("/api/instances/{inst}/materials/eia/files"),
            Some("chen"),
            None,
            &[],
        )
        .await;
    assert_eq!(list.json, json!([]), "{}", list.text);
    let up = upload(&s, "chen", &inst, "eia", &[("file", "环评批复.pdf", PDF)]).await;
    assert_eq!(up.status, StatusCode::CREATED, "{}", up.text);
    assert_eq!(stored_content(&s).await, (1, 1));
}
