//! Small pieces the views share: status badges, times, the pause banner.

use mailroom_shared::sending::{Paused, Status};
use wasm_bindgen::JsValue;
use yew::prelude::*;

use super::code::Hint;

/// A status as a word on a coloured badge: the word carries the meaning,
/// the colour only repeats it.
pub fn status_badge(status: Status) -> Html {
    html! { <span class={classes!("badge", status.as_str())}>{ status.as_str() }</span> }
}

/// An RFC 3339 time in the reader's own zone and format; the text itself
/// when the browser cannot read it.
pub fn local_time(rfc3339: &str) -> String {
    let date = js_sys::Date::new(&JsValue::from_str(rfc3339));
    if date.get_time().is_nan() {
        return rfc3339.to_string();
    }
    String::from(date.to_locale_string("default", &JsValue::UNDEFINED))
}

/// A `<time>` element for an RFC 3339 time.
pub fn time(rfc3339: &str) -> Html {
    html! { <time datetime={rfc3339.to_string()}>{ local_time(rfc3339) }</time> }
}

/// "Stage: auth · Code: 5.7.139", as the test dialog shows it.
pub fn stage_line(stage: Option<&str>, code: Option<&str>) -> Html {
    html! {
        <p class="stage">
            if let Some(stage) = stage { { "Stage: " }<strong>{ stage.to_string() }</strong> }
            if let Some(code) = code { { " · Code: " }<strong class="code">{ code.to_string() }</strong> }
        </p>
    }
}

/// The banner on every view while delivery is paused: what failed, the fix,
/// how many messages wait, and the way to the settings.
pub fn pause_banner(paused: &Paused, waiting: u64) -> Html {
    html! {
        <section class="banner paused" role="alert" aria-labelledby="paused-title" id="paused">
            <h2 id="paused-title">{ "Delivery is paused" }</h2>
            <p class="waiting"><strong>{ waiting }</strong>
                { if waiting == 1 { " message is waiting. " } else { " messages are waiting. " } }
                { "Nothing is lost or bounced: they go out once the problem is fixed." }</p>
            { stage_line(Some(paused.stage.as_str()), paused.code.as_deref()) }
            <p class="message">{ paused.message.clone() }</p>
            if let Some(h) = &paused.hint {
                <Hint text={AttrValue::from(h.clone())} />
            }
            <p class="since">{ "Since " }{ time(&paused.since) }{ ". Mailroom tries again every minute and at once when the settings are saved." }</p>
            <a class="button" href="#/settings">{ "Open the settings" }</a>
        </section>
    }
}
