//! Commands with a copy button, and hint text whose `backticked` parts are commands.

use yew::prelude::*;

#[derive(Properties, PartialEq)]
pub struct CommandProps {
    /// The command line.
    pub command: AttrValue,
}

/// A command line and a button that copies it.
#[function_component(Command)]
pub fn command(props: &CommandProps) -> Html {
    let copied = use_state(|| false);
    let onclick = {
        let text = props.command.to_string();
        let copied = copied.clone();
        Callback::from(move |_: MouseEvent| {
            if let Some(w) = web_sys::window() {
                let _ = w.navigator().clipboard().write_text(&text);
            }
            copied.set(true);
        })
    };
    // The label names what it copies: the command's first word (the cmdlet).
    let what = props.command.split_whitespace().next().unwrap_or("command");
    html! {
        <div class="command">
            <code>{ props.command.clone() }</code>
            <button type="button" class="copy" {onclick} aria-label={format!("Copy the {what} command")}>
                { if *copied { "Copied" } else { "Copy" } }
            </button>
        </div>
    }
}

#[derive(Properties, PartialEq)]
pub struct HintProps {
    /// Text in which `backticked` parts are commands.
    pub text: AttrValue,
}

/// A hint: prose, with each backticked command on its own line with a copy button.
#[function_component(Hint)]
pub fn hint(props: &HintProps) -> Html {
    let parts: Vec<Html> = props
        .text
        .split('`')
        .enumerate()
        .filter(|(_, p)| !p.trim().is_empty())
        .map(|(i, part)| {
            if i % 2 == 1 {
                html! { <Command command={AttrValue::from(part.to_string())} /> }
            } else {
                html! { <span>{ part.to_string() }</span> }
            }
        })
        .collect();
    html! { <div class="hint">{ for parts }</div> }
}
