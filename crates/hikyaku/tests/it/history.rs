//! The Send Job History's account and day filters: at the page, in its
//! paging links and in the CSV export of what it shows.

use hikyaku::queue::JobStore as _;
use hikyaku::store::Store;
use testkit::{ADMIN_PASSWORD, Browser, TestServer};

/// Unix seconds of a UTC time.
fn at(date: &str, hour: u8, minute: u8) -> i64 {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(date, &format)
        .unwrap()
        .with_hms(hour, minute, 0)
        .unwrap()
        .assume_utc()
        .unix_timestamp()
}

async fn add(store: &Store, account: i64, subject: &str, created_at: i64) {
    let job = hikyaku::intake::store_sink::new_job(
        "test",
        "127.0.0.1",
        Some(account),
        "mfp@example.com",
        vec!["boss@example.com".into()],
        format!("Subject: {subject}\r\n\r\nbody\r\n").into_bytes(),
    );
    store.enqueue(&job, created_at).await.unwrap();
}

/// The subjects on a page of the history, in its order.
fn subjects(body: &str) -> Vec<String> {
    body.split("<tr id=\"job-")
        .skip(1)
        .filter_map(|row| {
            let cells: Vec<&str> = row.split("<td").collect();
            // Time, From, To, Subject: the fifth piece is the subject cell.
            let cell = cells.get(4)?;
            let text = cell.split_once('>')?.1.split('<').next()?;
            Some(text.to_owned())
        })
        .collect()
}

/// The link with this id on a page, unescaped.
fn link(body: &str, id: &str) -> Option<String> {
    let head = body.split(&format!("id=\"{id}\"")).next()?;
    if head.len() == body.len() {
        return None;
    }
    let href = head.rsplit("href=\"").next()?.split('"').next()?;
    Some(href.replace("&#38;", "&").replace("&amp;", "&"))
}

fn csv_subjects(text: &str) -> Vec<String> {
    let text = text.trim_start_matches('\u{feff}');
    let mut rows = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(text.as_bytes());
    rows.records()
        .map(|r| r.unwrap().get(6).unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn the_history_filters_by_account_and_day_at_the_page_and_in_the_csv() {
    let server = TestServer::start().await;
    let admin = server.setup_admin().await;
    let store = Store::open(server.dir.path()).await.unwrap();
    let accounts = store.accounts().await.unwrap();
    let (ms, google) = (accounts[0].id, accounts[1].id);
    add(&store, ms, "m-0301-10", at("2026-03-01", 10, 0)).await;
    add(&store, google, "g-0301-2330", at("2026-03-01", 23, 30)).await;
    add(&store, ms, "m-0302-0030", at("2026-03-02", 0, 30)).await;
    add(&store, ms, "m-0305-12", at("2026-03-05", 12, 0)).await;

    // One account, one day (in the display time zone, UTC by default).
    let page = admin
        .get(&format!(
            "/jobs?account={ms}&since=2026-03-01&until=2026-03-01"
        ))
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(subjects(&page.body), ["m-0301-10"]);
    // The form shows the filters in use.
    assert!(
        page.body
            .contains(&format!("<option value=\"{ms}\" selected>")),
        "{}",
        page.body
    );
    assert!(
        page.body
            .contains("name=\"since\" id=\"jobs-since\" value=\"2026-03-01\"")
    );
    // Each bound alone; the last day is included whole.
    let since = admin.get("/jobs?since=2026-03-02").await.body;
    assert_eq!(subjects(&since), ["m-0305-12", "m-0302-0030"]);
    let until = admin.get("/jobs?until=2026-03-01").await.body;
    assert_eq!(subjects(&until), ["g-0301-2330", "m-0301-10"]);
    let other = admin.get(&format!("/jobs?account={google}")).await.body;
    assert_eq!(subjects(&other), ["g-0301-2330"]);

    // The CSV link exports what the page shows.
    let page = admin
        .get(&format!(
            "/jobs?account={ms}&since=2026-03-01&until=2026-03-02"
        ))
        .await
        .body;
    assert_eq!(subjects(&page), ["m-0302-0030", "m-0301-10"]);
    let csv_href = link(&page, "jobs-csv").expect("a CSV link");
    assert_eq!(
        csv_href,
        format!("/jobs.csv?state=&q=&account={ms}&since=2026-03-01&until=2026-03-02")
    );
    let csv = admin.get(&csv_href).await;
    assert_eq!(csv.status, 200);
    assert_eq!(csv_subjects(&csv.body), ["m-0302-0030", "m-0301-10"]);

    // Days follow the display time zone: 23:30 UTC is the next day in Tokyo.
    store
        .set_setting(hikyaku::admin::network::TIME_ZONE_SETTING, "+09:00")
        .await
        .unwrap();
    let tokyo = admin
        .get("/jobs?since=2026-03-02&until=2026-03-02")
        .await
        .body;
    assert_eq!(subjects(&tokyo), ["m-0302-0030", "g-0301-2330"]);
    store
        .set_setting(hikyaku::admin::network::TIME_ZONE_SETTING, "+00:00")
        .await
        .unwrap();

    // Paging links keep the filters.
    for i in 0..101 {
        add(
            &store,
            google,
            &format!("p{i:03}"),
            at("2026-04-10", 8, 0) + i,
        )
        .await;
    }
    let first = admin
        .get(&format!(
            "/jobs?account={google}&since=2026-04-10&until=2026-04-10"
        ))
        .await
        .body;
    assert_eq!(subjects(&first).len(), 100);
    assert_eq!(subjects(&first)[0], "p100");
    let older = link(&first, "jobs-older").expect("a link to older jobs");
    assert_eq!(
        older,
        format!("/jobs?state=&q=&account={google}&since=2026-04-10&until=2026-04-10&page=1")
    );
    let second = admin.get(&older).await.body;
    assert_eq!(subjects(&second), ["p000"]);
    let newer = link(&second, "jobs-newer").expect("a link to newer jobs");
    assert!(
        newer.contains(&format!("account={google}&since=2026-04-10")),
        "{newer}"
    );

    // A day that cannot be read: said so, the value kept, no rows.
    let bad = admin.get("/jobs?since=2026-13-01").await;
    assert_eq!(bad.status, 400);
    assert!(
        bad.body.contains("is not a day: enter it as YYYY-MM-DD"),
        "{}",
        bad.body
    );
    assert!(bad.body.contains("value=\"2026-13-01\""), "{}", bad.body);
    assert!(subjects(&bad.body).is_empty());
    let bad_csv = admin.get("/jobs.csv?until=tomorrow").await;
    assert_eq!(bad_csv.status, 400, "{}", bad_csv.body);

    // Any term is searched: one holding a NUL (no stored text can) finds
    // nothing, on the page and in a whole export, instead of an error.
    let nul = admin
        .get("/jobs?q=%C3%9E%3F%C2%9Df%F0%A6%9D%B4%0F%00W")
        .await;
    assert_eq!(nul.status, 200, "{}", nul.body);
    assert!(subjects(&nul.body).is_empty());
    let nul_csv = admin.get("/jobs.csv?q=m-0301%00").await;
    assert_eq!(nul_csv.status, 200, "{}", nul_csv.body);
    assert!(csv_subjects(&nul_csv.body).is_empty(), "{}", nul_csv.body);
    assert!(nul_csv.body.lines().count() == 1, "{}", nul_csv.body);

    // Both languages label the new filters.
    let page = admin.get("/jobs").await.body;
    assert!(
        page.contains("<label>From (day)<input name=\"since\""),
        "{page}"
    );
    assert!(
        page.contains("<label>Until (day)<input name=\"until\""),
        "{page}"
    );
    let ja = Browser::with_lang(&server, "ja");
    ja.login("admin", ADMIN_PASSWORD).await;
    let page = ja.get("/jobs").await.body;
    assert!(
        page.contains("<label>開始日<input name=\"since\""),
        "{page}"
    );
    assert!(
        page.contains("<label>終了日<input name=\"until\""),
        "{page}"
    );
    let bad = ja.get("/jobs?since=x").await.body;
    assert!(bad.contains("は日付ではありません"), "{bad}");
    store.close().await;
}

/// Jobs waiting for the search index (SQLite): those past its mark.
async fn unindexed(server: &TestServer) -> i64 {
    let file = server.dir.path().join("hikyaku.sqlite");
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&file)
        .read_only(true);
    let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
    let n = sqlx::query_scalar(
        "SELECT COUNT(*) FROM jobs WHERE rowid > (SELECT indexed_to FROM search_mark)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    pool.close().await;
    n
}

/// Messages just accepted are found by the search before the server has
/// put them in the search index, and after: it does so by itself within
/// about a second of the intake going quiet.
#[tokio::test]
async fn new_mail_is_searched_before_and_after_it_is_indexed() {
    let (_fc, server, admin) = crate::sending::microsoft_ready().await;
    for i in 0..3 {
        let r = crate::sending::submit(&server, &format!("indexing-{i}"), "body").await;
        assert!(r.starts_with("250"), "{r}");
    }
    let found = |term: &'static str| {
        let admin = &admin;
        async move { subjects(&admin.get(&format!("/jobs?q={term}")).await.body) }
    };
    let all = ["indexing-2", "indexing-1", "indexing-0"];
    // Found right away, however far the index has got.
    assert_eq!(found("indexing-").await, all);
    assert_eq!(found("ndexing-1").await, ["indexing-1"]);
    let mut waiting = unindexed(&server).await;
    for _ in 0..50 {
        if waiting == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        waiting = unindexed(&server).await;
    }
    assert_eq!(waiting, 0, "jobs still wait for the search index after 5 s");
    assert_eq!(found("indexing-").await, all);
    assert_eq!(found("ndexing-1").await, ["indexing-1"]);
    assert!(found("indexing-9").await.is_empty());
}
