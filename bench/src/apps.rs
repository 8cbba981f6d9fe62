//! The VoiceXML applications the bench tools carry and serve themselves.
//!
//! They take keys only (`inputmodes` `dtmf`): a callee that echoes the prompt back
//! (`bench callee --media echo`) would otherwise barge in on its own echo, since their
//! builtin `digits` and `boolean` fields have voice forms too.
//!
//! Each one reads `session.bench_call` (the load tool's number for the call) and submits it
//! with what the callee pressed and `t`, the interpreter's wall clock in milliseconds when
//! the input was matched (`Date.now()` in `<filled>`), so the receiver can tell which call a
//! submit belongs to and how long the submit took to arrive.

/// One application: where it is served and its document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct App {
    /// Its name on the command line (`--app survey`).
    pub name: &'static str,
    /// The path the app server serves it at.
    pub path: &'static str,
    /// The field the load tool checks in the submit.
    pub field: &'static str,
    /// The VoiceXML document.
    pub document: &'static str,
}

/// A DTMF survey: asks for a code, collects digits up to `#`, submits them.
pub const SURVEY: App = App {
    name: "survey",
    path: "/survey.vxml",
    field: "digits",
    document: r#"<?xml version="1.0" encoding="UTF-8"?>
<vxml version="2.1" xmlns="http://www.w3.org/2001/vxml">
  <var name="call" expr="session.bench_call"/>
  <property name="inputmodes" value="dtmf"/>
  <form id="survey">
    <field name="digits" type="digits">
      <prompt>Please enter your code, then press pound.</prompt>
      <noinput count="3"><exit/></noinput>
      <noinput><reprompt/></noinput>
      <nomatch count="3"><exit/></nomatch>
      <nomatch><reprompt/></nomatch>
      <filled>
        <var name="t" expr="Date.now()"/>
        <submit next="/submit" namelist="call digits t" method="post"/>
      </filled>
    </field>
  </form>
</vxml>
"#,
};

/// An appointment reminder: a yes/no key (1 confirms, 2 cancels), submitted as `confirm`.
pub const REMINDER: App = App {
    name: "reminder",
    path: "/reminder.vxml",
    field: "confirm",
    document: r#"<?xml version="1.0" encoding="UTF-8"?>
<vxml version="2.1" xmlns="http://www.w3.org/2001/vxml">
  <var name="call" expr="session.bench_call"/>
  <property name="inputmodes" value="dtmf"/>
  <form id="reminder">
    <field name="confirm" type="boolean">
      <prompt>Hello. Your appointment is tomorrow at nine.
        Press 1 to confirm, or 2 to cancel.</prompt>
      <noinput count="3"><exit/></noinput>
      <noinput><reprompt/></noinput>
      <nomatch count="3"><exit/></nomatch>
      <nomatch><reprompt/></nomatch>
      <filled>
        <var name="t" expr="Date.now()"/>
        <submit next="/submit" namelist="call confirm t" method="post"/>
      </filled>
    </field>
  </form>
</vxml>
"#,
};

/// The survey behind a long prompt (about half a minute of speech) the callee can barge
/// into: media load while the call waits for keys.
pub const LONG_PROMPT: App = App {
    name: "long-prompt",
    path: "/long-prompt.vxml",
    field: "digits",
    document: r#"<?xml version="1.0" encoding="UTF-8"?>
<vxml version="2.1" xmlns="http://www.w3.org/2001/vxml">
  <var name="call" expr="session.bench_call"/>
  <property name="inputmodes" value="dtmf"/>
  <form id="long">
    <field name="digits" type="digits">
      <prompt bargein="true">
        Thank you for taking part in this survey. This message is long on purpose: it keeps
        audio flowing to you while the platform waits for your keys, the way a real
        announcement does before a menu. We will ask you for a short code. The code is the
        number you were given when you signed up, and you can enter it at any time, even
        while this message is still playing. When you have entered every digit of the code,
        press the pound key to finish. If you make a mistake, simply wait, and the question
        will be asked again. Your answers are stored with the call and sent to the
        organisation that asked for it. Nothing else is recorded. Thank you again for your
        time and your patience. Please enter your code now, then press pound.
      </prompt>
      <noinput count="3"><exit/></noinput>
      <noinput><reprompt/></noinput>
      <nomatch count="3"><exit/></nomatch>
      <nomatch><reprompt/></nomatch>
      <filled>
        <var name="t" expr="Date.now()"/>
        <submit next="/submit" namelist="call digits t" method="post"/>
      </filled>
    </field>
  </form>
</vxml>
"#,
};

/// A short prompt and one key, then the submit and its goodbye: the smallest application
/// that talks, listens and reports, for setup-rate runs with media
/// (`bench/sip/prompt_key.sh`, against a SIPp uas that presses 1).
pub const KEY: App = App {
    name: "key",
    path: "/key.vxml",
    field: "key",
    document: r#"<?xml version="1.0" encoding="UTF-8"?>
<vxml version="2.1" xmlns="http://www.w3.org/2001/vxml">
  <var name="call" expr="session.bench_call"/>
  <property name="inputmodes" value="dtmf"/>
  <form id="key">
    <field name="key" type="digits?length=1">
      <prompt>Press a key.</prompt>
      <noinput><exit/></noinput>
      <nomatch><exit/></nomatch>
      <filled>
        <var name="t" expr="Date.now()"/>
        <submit next="/submit" namelist="call key t" method="post"/>
      </filled>
    </field>
  </form>
</vxml>
"#,
};

/// No prompt, no input: the call is answered, the application exits at once and Outdial
/// hangs up. Call setup and teardown alone, for setup-rate runs against any UAS (SIPp's).
/// Nothing is submitted (`field` is empty).
pub const HANGUP: App = App {
    name: "hangup",
    path: "/hangup.vxml",
    field: "",
    document: r#"<?xml version="1.0" encoding="UTF-8"?>
<vxml version="2.1" xmlns="http://www.w3.org/2001/vxml">
  <form><block><exit/></block></form>
</vxml>
"#,
};

/// Every application carried.
pub const ALL: [App; 5] = [SURVEY, REMINDER, LONG_PROMPT, KEY, HANGUP];

/// The answer to every submit: thanks and hang up.
pub const GOODBYE: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<vxml version="2.1" xmlns="http://www.w3.org/2001/vxml">
  <form><block><prompt>Thank you. Goodbye.</prompt><disconnect/></block></form>
</vxml>
"#;

/// The application called `name`.
pub fn by_name(name: &str) -> Option<App> {
    ALL.into_iter().find(|a| a.name == name)
}

/// The application served at `path`.
pub fn by_path(path: &str) -> Option<App> {
    ALL.into_iter().find(|a| a.path == path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_paths_are_distinct_and_found() {
        for app in ALL {
            assert_eq!(by_name(app.name), Some(app));
            assert_eq!(by_path(app.path), Some(app));
            if app.field.is_empty() {
                assert!(!app.document.contains("<submit"));
                continue;
            }
            assert!(
                app.document
                    .contains(&format!("namelist=\"call {} t\"", app.field))
            );
        }
        assert_eq!(by_name("nope"), None);
    }
}
