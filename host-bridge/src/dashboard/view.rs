//! Draws a [`Model`]: a title, the table of boxes (columns dropped as the terminal
//! narrows, long cells cut with `…`), the selected box's services and waiting requests,
//! the last message and the key footer; help, the stop question and the URL picker over it.
//! Every string a box supplied goes through [`shown`] before it is drawn.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Row, Table, TableState};
use ratatui::Frame;
use unicode_width::UnicodeWidthChar;

use super::input::KEYS;
use super::model::{BoxView, Mode, Model, Reach};
use crate::text::shown;

/// What the title says the dashboard covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Title(pub String);

/// `s` cut to at most `width` columns, ending in `…` when cut.
pub fn fit(s: &str, width: usize) -> String {
    let total: usize = s.chars().map(|c| c.width().unwrap_or(0)).sum();
    if total <= width {
        return s.to_string();
    }
    if width == 0 {
        return String::new();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in s.chars() {
        let w = c.width().unwrap_or(0);
        if used + w > width - 1 {
            break;
        }
        used += w;
        out.push(c);
    }
    out.push('…');
    out
}

/// The columns of the table, in the order they are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Column {
    Number,
    Name,
    Provider,
    State,
    Agents,
    Services,
    Waiting,
}

impl Column {
    const ALL: [Column; 7] = [
        Column::Number,
        Column::Name,
        Column::Provider,
        Column::State,
        Column::Agents,
        Column::Services,
        Column::Waiting,
    ];

    fn header(self) -> &'static str {
        match self {
            Column::Number => "#",
            Column::Name => "NAME",
            Column::Provider => "PROVIDER",
            Column::State => "STATE",
            Column::Agents => "AGENTS",
            Column::Services => "SERVICES",
            Column::Waiting => "WAITING",
        }
    }

    /// Which columns go first when the terminal is narrow (highest first).
    fn drop_order() -> [Column; 4] {
        [
            Column::Number,
            Column::Provider,
            Column::Services,
            Column::Waiting,
        ]
    }

    /// The cell of box `b` (escaped, not yet cut).
    fn cell(self, b: &BoxView) -> String {
        match self {
            Column::Number => b.number.to_string(),
            Column::Name => shown(&b.name),
            Column::Provider => b.provider.clone(),
            Column::State => b.reach.word().to_string(),
            Column::Agents => {
                if b.agents.is_empty() {
                    "-".into()
                } else {
                    shown(
                        &b.agents
                            .iter()
                            .map(super::model::Agent::label)
                            .collect::<Vec<_>>()
                            .join(", "),
                    )
                }
            }
            Column::Services => match &b.services {
                None => "?".into(),
                Some(s) if s.is_empty() => "-".into(),
                Some(s) => shown(
                    &s.iter()
                        .map(|s| match s.port {
                            Some(p) => format!("{}:{p} {}", s.name, s.state),
                            None => format!("{} {}", s.name, s.state),
                        })
                        .collect::<Vec<_>>()
                        .join(", "),
                ),
            },
            Column::Waiting => match b.approvals.len() {
                0 => "-".into(),
                n => n.to_string(),
            },
        }
    }

    /// The widest this column is drawn.
    fn cap(self) -> usize {
        match self {
            Column::Name => 24,
            Column::Agents | Column::Services => 40,
            _ => 12,
        }
    }
}

/// The columns that fit in `width` and how wide each is drawn, for `boxes`.
fn columns(boxes: &[BoxView], width: usize) -> Vec<(Column, usize)> {
    let mut cols: Vec<(Column, usize)> = Column::ALL
        .iter()
        .map(|&c| {
            let widest = boxes
                .iter()
                .map(|b| unicode_width::UnicodeWidthStr::width(c.cell(b).as_str()))
                .chain([c.header().len()])
                .max()
                .unwrap_or(0);
            (c, widest.min(c.cap()))
        })
        .collect();
    // One space between columns.
    let total = |cols: &[(Column, usize)]| {
        cols.iter().map(|c| c.1).sum::<usize>() + cols.len().saturating_sub(1)
    };
    for drop in Column::drop_order() {
        if total(&cols) <= width {
            break;
        }
        cols.retain(|c| c.0 != drop);
    }
    // Still too wide: AGENTS, then NAME give up their width (down to 5 columns each).
    for shrink in [Column::Agents, Column::Name] {
        let over = total(&cols).saturating_sub(width);
        if let Some(c) = cols.iter_mut().find(|c| c.0 == shrink) {
            c.1 = c.1.saturating_sub(over).max(5);
        }
    }
    cols
}

/// The colour of a box state.
fn reach_colour(reach: &Reach) -> Color {
    match reach {
        Reach::Running => Color::Green,
        Reach::Stopped => Color::Yellow,
        Reach::Unknown | Reach::Phase(_) => Color::Cyan,
        Reach::Unreachable(_) => Color::Red,
    }
}

/// Draws `model` into `frame`.
pub fn draw(frame: &mut Frame<'_>, model: &Model, title: &Title) {
    let area = frame.area();
    let [head, table, detail, message, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(4),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(area);
    draw_title(frame, model, title, head);
    draw_table(frame, model, table);
    draw_detail(frame, model, detail);
    if let Some(m) = &model.message {
        frame.render_widget(
            Paragraph::new(fit(m, usize::from(message.width))).style(Style::new().bold()),
            message,
        );
    }
    frame.render_widget(
        Paragraph::new(fit(
            &footer_text(usize::from(footer.width)),
            usize::from(footer.width),
        ))
        .style(Style::new().add_modifier(Modifier::REVERSED)),
        footer,
    );
    match &model.mode {
        Mode::Normal => {}
        Mode::Help => draw_help(frame, area),
        Mode::ConfirmStop(name) => {
            let text = format!(
                "Stop box `{}`? y stops it, any other key keeps it",
                shown(name)
            );
            popup(frame, area, "stop", vec![Line::from(text)]);
        }
        Mode::PickUrl {
            choices, selected, ..
        } => {
            let lines = choices
                .iter()
                .enumerate()
                .map(|(i, (label, _))| {
                    let line = Line::from(format!(
                        "{} {}",
                        if i == *selected { ">" } else { " " },
                        shown(label)
                    ));
                    if i == *selected {
                        line.style(Style::new().add_modifier(Modifier::REVERSED))
                    } else {
                        line
                    }
                })
                .collect();
            popup(frame, area, "open (Enter), Esc leaves", lines);
        }
    }
}

/// The footer for a terminal `width` wide: the whole key list, or the short one.
fn footer_text(width: usize) -> String {
    let long = "↑↓ select  Enter/a attach  o open  s screen  y/n approve/deny  S stop/start  ? help  q quit";
    if unicode_width::UnicodeWidthStr::width(long) <= width {
        long.into()
    } else {
        "↑↓ a o s y n S ? q (? for help)".into()
    }
}

fn draw_title(frame: &mut Frame<'_>, model: &Model, title: &Title, area: Rect) {
    let mut spans = vec![Span::styled(
        format!("agentbox dashboard: {}", title.0),
        Style::new().bold(),
    )];
    if !model.snapshot.bridge_running {
        spans.push(Span::styled(
            "  host bridge not running (`agentbox bridge start`)",
            Style::new().fg(Color::Red),
        ));
    }
    if let Some(e) = &model.snapshot.error {
        spans.push(Span::styled(
            format!("  {}", shown(e)),
            Style::new().fg(Color::Red),
        ));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn draw_table(frame: &mut Frame<'_>, model: &Model, area: Rect) {
    let boxes = &model.snapshot.boxes;
    if boxes.is_empty() {
        frame.render_widget(
            Paragraph::new("no boxes: create one with `agentbox create` inside a git repository"),
            area,
        );
        return;
    }
    let cols = columns(boxes, usize::from(area.width));
    let header = Row::new(cols.iter().map(|(c, w)| fit(c.header(), *w)))
        .style(Style::new().add_modifier(Modifier::BOLD | Modifier::UNDERLINED));
    let rows = boxes.iter().map(|b| {
        Row::new(cols.iter().map(|(c, w)| {
            let text = fit(&c.cell(b), *w);
            match c {
                Column::State => Span::styled(text, Style::new().fg(reach_colour(&b.reach))),
                Column::Waiting if !b.approvals.is_empty() => {
                    Span::styled(text, Style::new().fg(Color::Magenta).bold())
                }
                _ => Span::raw(text),
            }
        }))
    });
    let widths = cols
        .iter()
        .map(|(_, w)| Constraint::Length(u16::try_from(*w).unwrap_or(u16::MAX)));
    let table = Table::new(rows, widths)
        .header(header)
        .column_spacing(1)
        .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED));
    let mut state = TableState::default().with_selected(Some(model.selected));
    frame.render_stateful_widget(table, area, &mut state);
}

/// The selected box's unreachable reason, services and oldest waiting request.
fn draw_detail(frame: &mut Frame<'_>, model: &Model, area: Rect) {
    let Some(b) = model.current() else {
        return;
    };
    let width = usize::from(area.width);
    let mut lines = Vec::new();
    if let Reach::Unreachable(why) = &b.reach {
        lines.push(Line::styled(
            fit(&format!("unreachable: {}", shown(why)), width),
            Style::new().fg(Color::Red),
        ));
    }
    let services = match &b.services {
        None => "services: not known yet".to_string(),
        Some(s) if s.is_empty() => "services: none".to_string(),
        Some(s) => format!(
            "services: {}",
            s.iter()
                .map(|s| {
                    let port = s.port.map(|p| format!(" :{p}")).unwrap_or_default();
                    shown(&format!("{} {}{port}", s.name, s.state))
                })
                .collect::<Vec<_>>()
                .join("  ")
        ),
    };
    lines.push(Line::from(fit(&services, width)));
    match b.approvals.first() {
        None => lines.push(Line::from("waiting: nothing")),
        Some(a) => {
            let more = match b.approvals.len() {
                1 => String::new(),
                n => format!(" (+{} more)", n - 1),
            };
            lines.push(Line::styled(
                fit(
                    &format!(
                        "waiting ({}): {}{more}  y approve, n deny",
                        shown(&a.kind),
                        shown(&a.summary)
                    ),
                    width,
                ),
                Style::new().fg(Color::Magenta),
            ));
        }
    }
    frame.render_widget(
        Paragraph::new(lines)
            .block(Block::new().title(Line::from(fit(&format!("─ {} ", shown(&b.name)), width)))),
        area,
    );
}

fn draw_help(frame: &mut Frame<'_>, area: Rect) {
    let lines = KEYS
        .iter()
        .map(|(k, what)| Line::from(format!("{k:<10} {what}")))
        .chain([Line::from(""), Line::from("any key closes this help")])
        .collect();
    popup(frame, area, "keys", lines);
}

/// `lines` in a bordered box in the middle of `area`, cut to fit.
fn popup(frame: &mut Frame<'_>, area: Rect, title: &str, lines: Vec<Line<'_>>) {
    let widest = lines.iter().map(Line::width).max().unwrap_or(0);
    let width = u16::try_from(widest + 4)
        .unwrap_or(u16::MAX)
        .min(area.width);
    let height = u16::try_from(lines.len() + 2)
        .unwrap_or(u16::MAX)
        .min(area.height);
    let rect = Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    };
    frame.render_widget(Clear, rect);
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(format!(" {title} "))),
        rect,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dashboard::model::tests::{approval, view};
    use crate::dashboard::model::{Agent, Service, Snapshot};
    use agentbox_protocol::agent::AgentState;
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;

    /// The screen of `model` drawn `width` × `height`, as lines of text.
    fn screen(model: &Model, width: u16, height: u16) -> Vec<String> {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("terminal");
        terminal
            .draw(|f| draw(f, model, &Title("project p".into())))
            .expect("draw");
        let buffer = terminal.backend().buffer();
        (0..height)
            .map(|y| {
                (0..width)
                    .map(|x| buffer[(x, y)].symbol().to_string())
                    .collect::<String>()
                    .trim_end()
                    .to_string()
            })
            .collect()
    }

    fn sample() -> Model {
        let mut busy = view("busy");
        busy.agents = vec![Agent {
            session: "claude".into(),
            agent: "claude".into(),
            state: AgentState::Waiting,
        }];
        busy.services = Some(vec![Service {
            name: "web".into(),
            state: "running".into(),
            port: Some(3000),
        }]);
        busy.approvals = vec![approval("a1", "busy", "open https://example.com/")];
        let mut idle = view("a-box-with-a-very-long-name-indeed-longer-than-the-column");
        idle.number = 2;
        idle.provider = "docker".into();
        idle.reach = Reach::Stopped;
        Model::new(Snapshot {
            boxes: vec![busy, idle],
            bridge_running: true,
            error: None,
        })
    }

    #[test]
    fn a_wide_terminal_shows_every_column_and_the_selected_box() {
        let lines = screen(&sample(), 140, 14);
        assert!(
            lines[0].starts_with("agentbox dashboard: project p"),
            "{lines:#?}"
        );
        let header = &lines[1];
        for h in [
            "#", "NAME", "PROVIDER", "STATE", "AGENTS", "SERVICES", "WAITING",
        ] {
            assert!(header.contains(h), "{h} missing from {header:?}");
        }
        let busy = lines.iter().find(|l| l.contains("busy")).expect("busy row");
        for cell in [
            "local",
            "running",
            "claude waiting",
            "web:3000 running",
            "1",
        ] {
            assert!(busy.contains(cell), "{cell} missing from {busy:?}");
        }
        // The long name is cut with an ellipsis at the column's width.
        let long = lines
            .iter()
            .find(|l| l.contains("a-box-with"))
            .expect("long row");
        assert!(long.contains("a-box-with-a-very-long-…"), "{long:?}");
        assert!(
            long.contains("stopped") && long.contains("docker"),
            "{long:?}"
        );
        // The detail of the selected box names its waiting request and the keys for it.
        let all = lines.join("\n");
        assert!(
            all.contains("waiting (open): open https://example.com/  y approve, n deny"),
            "{all}"
        );
        assert!(all.contains("services: web running :3000"), "{all}");
        assert!(lines[13].contains("q quit"), "{:?}", lines[13]);
    }

    #[test]
    fn a_narrow_terminal_drops_columns_and_keeps_name_and_state() {
        let lines = screen(&sample(), 40, 14);
        let header = &lines[1];
        assert!(
            header.contains("NAME") && header.contains("STATE"),
            "{header:?}"
        );
        for gone in ["PROVIDER", "SERVICES", "#"] {
            assert!(!header.contains(gone), "{gone} still in {header:?}");
        }
        assert!(lines.iter().all(|l| l.chars().count() <= 40));
        assert!(lines[13].contains("? for help"), "{:?}", lines[13]);
    }

    #[test]
    fn box_supplied_strings_are_escaped() {
        let mut m = sample();
        m.snapshot.boxes[0].approvals[0].summary = "push\x1b[2J\nforged line".into();
        m.snapshot.boxes[0].services.as_mut().expect("services")[0].name = "w\u{202e}eb".into();
        let all = screen(&m, 160, 14).join("\n");
        assert!(all.contains("push\\x1b[2J\\nforged line"), "{all}");
        assert!(all.contains("w\\u{202e}eb"), "{all}");
        assert!(!all.contains('\x1b') && !all.contains('\u{202e}'));
    }

    #[test]
    fn help_and_the_stop_question_are_drawn_over_the_table() {
        let mut m = sample();
        m.mode = Mode::Help;
        let all = screen(&m, 100, 20).join("\n");
        assert!(
            all.contains("approve / deny its oldest waiting request"),
            "{all}"
        );
        m.mode = Mode::ConfirmStop("busy".into());
        let all = screen(&m, 100, 20).join("\n");
        assert!(all.contains("Stop box `busy`? y stops it"), "{all}");
    }

    #[test]
    fn fit_cuts_with_an_ellipsis_by_display_width() {
        assert_eq!(fit("abcdef", 6), "abcdef");
        assert_eq!(fit("abcdef", 4), "abc…");
        assert_eq!(fit("日本語です", 5), "日本…");
        assert_eq!(fit("abc", 0), "");
    }
}
