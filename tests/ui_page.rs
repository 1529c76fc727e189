//! The `/ui` page in a real browser: the server on a port-0 listener, Debian's headless Chromium
//! driven by playwright-core (`tests/browser/ui.mjs`). The first preset (the bundle's example car)
//! must show `/predict`'s price and a waterfall whose bars, from the base value, add up to it; a bad
//! mileage must show the server's error next to the mileage field; an uploaded CSV must list
//! `/predict`'s prices; and the page must fetch nothing from anywhere but this server. The
//! screenshot goes to `target/ui/explain.png` (the README's is a copy of it).

mod common;

use xgserve::bundle::Model;
use xgserve::http::{self, AppState};

/// The bars are float32 values written as exact decimals and added in f64 by the test: their sum
/// may differ from the price by each value's float32 rounding, 2^-24 of the bars' total size.
const SUM_TOLERANCE: f64 = 1e-6;

#[tokio::test(flavor = "multi_thread")]
async fn the_page_draws_a_waterfall_that_adds_up_to_the_price_and_shows_errors_by_their_field() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let state = AppState::new(Model::load(common::shipped_bundle()).unwrap(), common::http::config());
    tokio::spawn(http::run(listener, state, std::future::pending()));

    let out = common::repo().join("target/ui");
    std::fs::create_dir_all(&out).unwrap();
    let screenshot = out.join("explain.png");
    let _ = std::fs::remove_file(&screenshot);
    let tmp = tempfile::tempdir().unwrap();
    let csv = tmp.path().join("cars.csv");
    std::fs::write(
        &csv,
        "model,year,transmission,mileage,fuelType,tax,mpg,engineSize\nC-MAX,2014,Semi-Auto,40000,Diesel,160,50.4,2.0\nEcoSport,2019,Automatic,1400,Petrol,150,44.1,1.0\n",
    )
    .unwrap();
    let shown = common::browser::run("ui.mjs", vec![base.into(), screenshot.clone().into(), csv.into()]).await;
    let expected: Vec<f64> = serde_json::from_str(common::http::EXAMPLE_RESPONSE).unwrap();

    let price = shown["price"].as_f64().unwrap();
    assert_eq!(
        price, expected[0],
        "the first preset is the example's first car: {shown}"
    );
    let bars = shown["bars"].as_array().unwrap();
    let kind = |bar: &serde_json::Value| bar["kind"].as_str().unwrap().to_owned();
    let value = |bar: &serde_json::Value| bar["value"].as_f64().unwrap();
    assert_eq!(kind(&bars[0]), "base");
    assert_eq!(kind(bars.last().unwrap()), "price");
    assert_eq!(value(bars.last().unwrap()), price, "the last bar is the price");
    let columns = &bars[1..bars.len() - 1];
    assert_eq!(columns.len(), 8, "a bar per input column: {shown}");
    let total: f64 = value(&bars[0]) + columns.iter().map(value).sum::<f64>();
    let scale: f64 = value(&bars[0]).abs() + columns.iter().map(|b| value(b).abs()).sum::<f64>();
    assert!(
        (total - price).abs() <= SUM_TOLERANCE * scale,
        "the bars add up to {total}, the price is {price}"
    );
    assert!(columns.iter().all(|b| matches!(kind(b).as_str(), "up" | "down")));

    let error = shown["mileageError"].as_str().unwrap();
    assert!(error.contains("mileage") && error.contains("row 0"), "{error}");
    let csv_prices: Vec<f64> = serde_json::from_value(shown["csvPrices"].clone()).unwrap();
    assert_eq!(csv_prices, expected, "the CSV's rows priced as /predict prices them");
    assert_eq!(shown["elsewhere"], serde_json::json!([]), "the page works offline");

    assert!(
        std::fs::metadata(&screenshot).unwrap().len() > 10_000,
        "a screenshot was taken"
    );
}
