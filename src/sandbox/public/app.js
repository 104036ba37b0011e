// The sandbox page: a small Slack client for the local workspace. It renders
// Block Kit and mrkdwn with DOM calls only (never innerHTML), so text from the
// bot or from users cannot inject markup. Elements carry data-* attributes
// (data-ts, data-block-id, data-action-id, data-view-id) for browser tests.

const state = {
  team: null,
  bot: null,
  users: [],
  channels: [],
  userGroups: [],
  /** Messages by `${channel}:${ts}`. */
  messages: new Map(),
  /** Open views by id. */
  views: new Map(),
  clock: { now: Date.now(), receivedAt: performance.now() },
  actingUser: localStorage.getItem('sandbox.user') || 'U0SBXALEX',
  // A permalink (/archives/C…/p…) arrives as ?channel=…&thread=…
  channel: new URLSearchParams(location.search).get('channel') || localStorage.getItem('sandbox.channel') || 'C0SBXINCIDENTS',
  threadTs: new URLSearchParams(location.search).get('thread'),
  /** Inline errors of the open modal, by block_id. */
  viewErrors: {},
};

const $ = (id) => document.getElementById(id);

// ----- DOM helpers -----

/** Creates an element; string and number children become text nodes. */
function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === 'className') node.className = value;
    else if (name.startsWith('on') || name === 'href' || name === 'src') {
      throw new Error(`el() does not set ${name}; use addEventListener or safeLink`);
    } else node.setAttribute(name, value === true ? '' : String(value));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** Creates an <a> for http(s) and mailto URLs; any other URL becomes plain text. */
function safeLink(url, label) {
  let parsed;
  try {
    parsed = new URL(url);
  } catch {
    return document.createTextNode(label);
  }
  if (!['http:', 'https:', 'mailto:'].includes(parsed.protocol))
    return document.createTextNode(label);

  const link = el('a', { target: '_blank', rel: 'noopener noreferrer' }, label);
  link.href = parsed.href;
  return link;
}

// ----- names and times -----

function userName(id) {
  const user = state.users.find((candidate) => candidate.id === id);
  return user ? user.displayName : id;
}

function channelName(id) {
  const channel = state.channels.find((candidate) => candidate.id === id);
  return channel ? channel.name : id;
}

/** Returns the bot's current time: the last clock report plus the real time since. */
function sandboxNow() {
  return state.clock.now + (performance.now() - state.clock.receivedAt);
}

function tsToMs(ts) {
  return Math.floor(Number(ts) * 1000);
}

const MONTHS = [
  'January',
  'February',
  'March',
  'April',
  'May',
  'June',
  'July',
  'August',
  'September',
  'October',
  'November',
  'December',
];
const DAYS = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'];

function ordinal(day) {
  if (day % 100 >= 11 && day % 100 <= 13) return `${day}th`;
  return `${day}${['th', 'st', 'nd', 'rd'][day % 10] || 'th'}`;
}

function dayDifference(date, reference) {
  const start = (value) =>
    new Date(value.getFullYear(), value.getMonth(), value.getDate()).getTime();
  return Math.round((start(date) - start(reference)) / 86_400_000);
}

function formatTime(date, seconds = false) {
  const options = { hour: 'numeric', minute: '2-digit' };
  if (seconds) options.second = '2-digit';
  return date.toLocaleTimeString('en-US', options);
}

function relativeDay(date, reference) {
  const difference = dayDifference(date, reference);
  if (difference === 0) return 'today';
  if (difference === -1) return 'yesterday';
  if (difference === 1) return 'tomorrow';
  return null;
}

function formatAgo(date, reference) {
  const seconds = Math.round((date.getTime() - reference.getTime()) / 1000);
  const units = [
    ['year', 31_536_000],
    ['month', 2_592_000],
    ['day', 86_400],
    ['hour', 3600],
    ['minute', 60],
  ];
  for (const [unit, size] of units) {
    const count = Math.trunc(Math.abs(seconds) / size);
    if (count >= 1) {
      const phrase = `${count} ${unit}${count === 1 ? '' : 's'}`;
      return seconds < 0 ? `${phrase} ago` : `in ${phrase}`;
    }
  }
  return seconds < 0 ? 'a few seconds ago' : 'in a few seconds';
}

/** Formats Slack's date token template in the reader's time zone, relative to the bot's clock. */
function formatSlackDate(unixSeconds, template) {
  const date = new Date(unixSeconds * 1000);
  const reference = new Date(sandboxNow());
  const month = MONTHS[date.getMonth()];
  const long = `${DAYS[date.getDay()]}, ${month} ${ordinal(date.getDate())}, ${date.getFullYear()}`;
  const plain = `${month} ${ordinal(date.getDate())}, ${date.getFullYear()}`;
  const short = `${month.slice(0, 3)} ${date.getDate()}, ${date.getFullYear()}`;
  const pretty = (fallback) => relativeDay(date, reference) ?? fallback;
  const pad = (value) => String(value).padStart(2, '0');

  const tokens = {
    date_num: `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`,
    date: plain,
    date_short: short,
    date_long: long,
    date_pretty: pretty(plain),
    date_short_pretty: pretty(short),
    date_long_pretty: pretty(long),
    day_divider_pretty: pretty(long),
    time: formatTime(date),
    time_secs: formatTime(date, true),
    ago: formatAgo(date, reference),
  };

  return template.replace(/\{([a-z_]+)\}/g, (whole, name) =>
    Object.hasOwn(tokens, name) ? tokens[name] : whole,
  );
}

function formatMessageTime(ts) {
  const date = new Date(tsToMs(ts));
  const reference = new Date(sandboxNow());
  const day = relativeDay(date, reference);
  const when =
    day === 'today' ? '' : `${day ?? `${MONTHS[date.getMonth()].slice(0, 3)} ${date.getDate()}`} `;
  return `${when}${formatTime(date)}`;
}

// ----- mrkdwn -----

const EMOJI = {
  white_check_mark: '✅',
  heavy_check_mark: '✔️',
  ballot_box_with_check: '☑️',
  x: '❌',
  warning: '⚠️',
  rotating_light: '🚨',
  hourglass: '⌛',
  hourglass_flowing_sand: '⏳',
  stopwatch: '⏱️',
  alarm_clock: '⏰',
  clock1: '🕐',
  lock: '🔒',
  unlock: '🔓',
  key: '🔑',
  closed_lock_with_key: '🔐',
  fire: '🔥',
  bell: '🔔',
  pager: '📟',
  memo: '📝',
  clipboard: '📋',
  white_circle: '⚪',
  large_green_circle: '🟢',
  red_circle: '🔴',
  large_yellow_circle: '🟡',
  large_blue_circle: '🔵',
  black_square_button: '🔲',
  arrows_counterclockwise: '🔄',
  floppy_disk: '💾',
  package: '📦',
  mag: '🔍',
  eyes: '👀',
  shield: '🛡️',
  calendar: '📅',
  spiral_calendar_pad: '🗓️',
  no_entry: '⛔',
  no_entry_sign: '🚫',
  rocket: '🚀',
  tada: '🎉',
  information_source: 'ℹ️',
  heavy_minus_sign: '➖',
  heavy_plus_sign: '➕',
  fast_forward: '⏩',
  double_vertical_bar: '⏸️',
  arrow_right: '➡️',
  point_right: '👉',
  construction: '🚧',
  bust_in_silhouette: '👤',
  busts_in_silhouette: '👥',
  gear: '⚙️',
  hammer_and_wrench: '🛠️',
  scroll: '📜',
  thumbsup: '👍',
  '+1': '👍',
  speech_balloon: '💬',
  link: '🔗',
  repeat: '🔁',
  sos: '🆘',
  checkered_flag: '🏁',
  recycle: '♻️',
  inbox_tray: '📥',
  outbox_tray: '📤',
  wastebasket: '🗑️',
  skip: '⏭️',
  black_right_pointing_double_triangle_with_vertical_bar: '⏭️',
  page_facing_up: '📄',
  satellite_antenna: '📡',
  test_tube: '🧪',
  white_large_square: '⬜',
};

/** Slack escapes only these three characters in message text. */
function decodeEntities(text) {
  return text.replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&');
}

function replaceEmoji(text) {
  return text.replace(/:([a-z0-9_+-]+):/g, (whole, name) =>
    Object.hasOwn(EMOJI, name) ? EMOJI[name] : whole,
  );
}

const SLOT_BASE = 0xe000;
const SLOT_PATTERN = /[\ue000-\uf8ff]/g;

/** Renders mrkdwn text into a fragment: code blocks, quotes, inline formats and <…> tokens. */
function renderMrkdwn(text) {
  const fragment = document.createDocumentFragment();
  const parts = text.split(/```/);

  parts.forEach((part, index) => {
    if (index % 2 === 1 && index < parts.length - 1) {
      fragment.append(
        el('pre', { className: 'code-block' }, decodeEntities(part.replace(/^\n/, ''))),
      );
      return;
    }
    const literal = index % 2 === 1 ? `\`\`\`${part}` : part;
    fragment.append(renderLines(literal));
  });

  return fragment;
}

function renderLines(text) {
  const fragment = document.createDocumentFragment();
  const lines = text.split('\n');
  let quote = null;

  lines.forEach((line, index) => {
    const quoted = /^(&gt;|>)\s?/.exec(line);
    if (quoted) {
      if (!quote) {
        quote = el('blockquote');
        fragment.append(quote);
      } else {
        quote.append('\n');
      }
      quote.append(renderInline(line.slice(quoted[0].length)));
      return;
    }

    quote = null;
    fragment.append(renderInline(line));
    const next = lines[index + 1];
    if (next !== undefined && !/^(&gt;|>)/.test(next)) fragment.append('\n');
  });

  return fragment;
}

/**
 * Renders one line. Code spans and <…> tokens are first swapped for
 * private-use placeholder characters, so the bold, italic and strike
 * patterns can span them without looking inside.
 */
function renderInline(line) {
  const slots = [];
  const slot = (value) => {
    slots.push(value);
    return String.fromCharCode(SLOT_BASE + slots.length - 1);
  };

  const prepared = line
    .replace(SLOT_PATTERN, '\ufffd')
    .replace(/`([^`]+)`/g, (whole, code) => slot({ code }))
    .replace(/<([^<>]+)>/g, (whole, inner) => slot({ token: inner }));

  return renderFormats(prepared, slots);
}

// A marker opens after a boundary (space, bracket, punctuation or placeholder)
// and closes before one, and the text inside neither starts nor ends with a space.
const FORMAT_BOUNDARY = `\\s()[\\]{}"'.,;:!?\\-\\ue000-\\uf8ff`;
const FORMAT_PATTERN = new RegExp(
  `(^|[${FORMAT_BOUNDARY}])([*_~])(?=[^\\s*_~])([^\\n]*?\\S)\\2(?=$|[${FORMAT_BOUNDARY}])`,
);
const FORMAT_TAGS = { '*': 'strong', _: 'em', '~': 's' };

function renderFormats(text, slots) {
  const fragment = document.createDocumentFragment();
  let rest = text;

  for (;;) {
    const match = FORMAT_PATTERN.exec(rest);
    if (!match) break;

    const start = match.index + match[1].length;
    fragment.append(expandSlots(rest.slice(0, start), slots));
    fragment.append(append(el(FORMAT_TAGS[match[2]]), [renderFormats(match[3], slots)]));
    rest = rest.slice(match.index + match[0].length);
  }

  fragment.append(expandSlots(rest, slots));
  return fragment;
}

function expandSlots(text, slots) {
  const fragment = document.createDocumentFragment();
  let buffer = '';

  for (const character of text) {
    const code = character.charCodeAt(0);
    if (code >= SLOT_BASE && code < SLOT_BASE + slots.length) {
      if (buffer) fragment.append(replaceEmoji(decodeEntities(buffer)));
      buffer = '';
      const value = slots[code - SLOT_BASE];
      fragment.append(
        value.code !== undefined
          ? el('code', {}, decodeEntities(value.code))
          : renderToken(value.token),
      );
    } else {
      buffer += character;
    }
  }

  if (buffer) fragment.append(replaceEmoji(decodeEntities(buffer)));
  return fragment;
}

/** Renders the inside of a <…> token: mentions, channels, specials, dates and links. */
function renderToken(inner) {
  const [target, ...labelParts] = inner.split('|');
  const label = labelParts.length > 0 ? decodeEntities(labelParts.join('|')) : null;

  if (target.startsWith('@U') || target.startsWith('@W')) {
    return el(
      'span',
      { className: 'mention', 'data-user-id': target.slice(1) },
      `@${userName(target.slice(1))}`,
    );
  }

  if (target.startsWith('#C')) {
    const id = target.slice(1);
    const name = label ?? channelName(id);
    const link = el(
      'button',
      { type: 'button', className: 'channel-link', 'data-channel-id': id },
      `#${name}`,
    );
    link.addEventListener('click', () => selectChannel(id));
    return link;
  }

  if (target === '!here' || target === '!channel' || target === '!everyone') {
    return el('span', { className: 'mention broadcast' }, `@${target.slice(1)}`);
  }

  if (target.startsWith('!subteam^')) {
    const id = target.slice('!subteam^'.length);
    const group = state.userGroups.find((candidate) => candidate.id === id);
    return el('span', { className: 'mention' }, label ?? `@${group ? group.handle : id}`);
  }

  if (target.startsWith('!date^')) {
    const [, unix, template, link] = target.split('^');
    const seconds = Number(unix);
    const valid = Number.isFinite(seconds);
    const dateText = valid
      ? formatSlackDate(seconds, decodeEntities(template ?? ''))
      : (label ?? '');
    const datetime = valid ? new Date(seconds * 1000).toISOString() : undefined;
    const node = el(
      'time',
      { className: 'slack-date', title: label ?? undefined, datetime },
      dateText,
    );
    return link ? append(safeLink(decodeEntities(link), ''), [node]) : node;
  }

  const url = decodeEntities(target);
  return safeLink(url, label ?? url);
}

/** Renders a text object: mrkdwn, or plain_text with `:emoji:` codes when emoji is not false. */
function renderText(textObject, className) {
  if (!textObject) return null;
  const node = el('span', { className: `text ${className ?? ''}`.trim() });
  if (textObject.type === 'mrkdwn') node.append(renderMrkdwn(textObject.text));
  else node.append(textObject.emoji === false ? textObject.text : replaceEmoji(textObject.text));
  return node;
}

function plain(textObject) {
  if (!textObject) return '';
  return textObject.type === 'mrkdwn'
    ? decodeEntities(textObject.text)
    : replaceEmoji(textObject.text);
}

// ----- Block Kit -----

/**
 * Renders blocks. `where` is { channel, messageTs } for a message or
 * { viewId } for a modal, and interactive elements send their clicks there.
 */
function renderBlocks(blocks, where) {
  const container = el('div', { className: 'blocks' });
  for (const block of blocks) container.append(renderBlock(block, where));
  return container;
}

function renderBlock(block, where) {
  const attributes = {
    className: `block block-${block.type}`,
    'data-block-id': block.block_id,
    'data-block-type': block.type,
  };

  switch (block.type) {
    case 'header':
      return el('h3', attributes, plain(block.text));
    case 'divider':
      return el('hr', attributes);
    case 'section': {
      const node = el('div', attributes);
      const body = el('div', { className: 'section-body' });
      if (block.text) body.append(renderText(block.text, 'section-text'));
      if (block.fields) {
        body.append(
          el(
            'div',
            { className: 'fields' },
            block.fields.map((field) => renderText(field, 'field')),
          ),
        );
      }
      node.append(body);
      if (block.accessory)
        node.append(
          el('div', { className: 'accessory' }, renderElement(block.accessory, block, where)),
        );
      return node;
    }
    case 'context':
      return el(
        'div',
        attributes,
        block.elements.map((element) =>
          element.type === 'image'
            ? el('span', { className: 'image-alt' }, `[${element.alt_text}]`)
            : renderText(element, 'context-text'),
        ),
      );
    case 'actions':
      return el(
        'div',
        attributes,
        block.elements.map((element) => renderElement(element, block, where)),
      );
    case 'input':
      return renderInputBlock(block, where);
    case 'image':
      return el(
        'div',
        attributes,
        el('span', { className: 'image-alt' }, `[image: ${block.alt_text}]`),
      );
    default:
      return el('div', attributes, `[${block.type} block]`);
  }
}

function renderInputBlock(block, where) {
  const control = renderElement(block.element, block, where, true);
  const error = state.viewErrors[block.block_id];
  return el(
    'div',
    {
      className: `block block-input${error ? ' has-error' : ''}`,
      'data-block-id': block.block_id,
      'data-block-type': 'input',
    },
    el(
      'label',
      { className: 'input-label' },
      plain(block.label),
      block.optional ? el('span', { className: 'optional' }, ' (optional)') : null,
    ),
    control,
    block.hint ? el('p', { className: 'hint' }, plain(block.hint)) : null,
    error ? el('p', { className: 'input-error', 'data-error-for': block.block_id }, error) : null,
  );
}

function elementAttributes(element, block, extra = {}) {
  return {
    'data-block-id': block.block_id,
    'data-action-id': element.action_id,
    'data-element-type': element.type,
    ...extra,
  };
}

/** Renders an element; `asInput` marks the control of an input block, whose value is submitted. */
function renderElement(element, block, where, asInput = false) {
  switch (element.type) {
    case 'button': {
      const button = el(
        'button',
        elementAttributes(element, block, {
          type: 'button',
          className: `btn ${element.style ?? ''}`.trim(),
          'data-confirm': element.confirm ? 'true' : undefined,
        }),
        plain(element.text),
      );
      button.addEventListener('click', () => pressButton(element, block, where));
      return button;
    }
    case 'static_select':
      return renderSelect(element, block, where, asInput, selectOptions(element));
    case 'users_select':
    case 'multi_users_select':
      return renderSelect(
        element,
        block,
        where,
        asInput,
        state.users
          .filter((user) => !user.isBot)
          .map((user) => ({ value: user.id, label: user.displayName })),
      );
    case 'plain_text_input': {
      const tag = element.multiline ? 'textarea' : 'input';
      const control = el(
        tag,
        elementAttributes(element, block, {
          className: 'text-input',
          'data-input': 'true',
          placeholder: element.placeholder ? plain(element.placeholder) : undefined,
          maxlength: element.max_length,
          rows: element.multiline ? 4 : undefined,
          type: element.multiline ? undefined : 'text',
        }),
      );
      if (element.initial_value) control.value = element.initial_value;
      return control;
    }
    case 'image':
      return el('span', { className: 'image-alt' }, `[${element.alt_text}]`);
    default:
      return el('span', {}, `[${element.type}]`);
  }
}

function selectOptions(element) {
  const options =
    element.options ?? (element.option_groups ?? []).flatMap((group) => group.options);
  return options.map((option) => ({ value: option.value, label: plain(option.text) }));
}

function renderSelect(element, block, where, asInput, choices) {
  const multiple = element.type === 'multi_users_select';
  const select = el(
    'select',
    elementAttributes(element, block, {
      className: 'select',
      multiple,
      'data-input': asInput ? 'true' : undefined,
    }),
  );
  if (!multiple)
    select.append(
      el('option', { value: '' }, element.placeholder ? plain(element.placeholder) : 'Select…'),
    );

  const initial = new Set(
    [element.initial_option?.value, element.initial_user, ...(element.initial_users ?? [])].filter(
      Boolean,
    ),
  );
  for (const choice of choices) {
    const option = el('option', { value: choice.value }, choice.label);
    option.selected = initial.has(choice.value);
    select.append(option);
  }

  if (!asInput) {
    select.addEventListener('change', () => {
      const selection = { blockId: block.block_id, actionId: element.action_id };
      if (element.type === 'static_select') selection.selectedOption = select.value;
      if (element.type === 'users_select') selection.selectedUser = select.value;
      if (multiple)
        selection.selectedUsers = [...select.selectedOptions].map((option) => option.value);
      if (!multiple && select.value === '') return;
      withConfirm(element.confirm, (confirmed) => sendClick(where, { ...selection, confirmed }));
    });
  }
  return select;
}

function pressButton(element, block, where) {
  withConfirm(element.confirm, (confirmed) => {
    if (element.url && /^https?:\/\//i.test(element.url))
      window.open(element.url, '_blank', 'noopener,noreferrer');
    sendClick(where, { blockId: block.block_id, actionId: element.action_id, confirmed });
  });
}

/** Shows the element's confirm dialog first, when it has one, then runs `action`. */
function withConfirm(confirm, action) {
  if (!confirm) {
    action(false);
    return;
  }
  showConfirm(confirm).then((confirmed) => {
    if (confirmed) action(true);
  });
}

function showConfirm(confirm) {
  const layer = $('confirm-layer');
  layer.replaceChildren();

  return new Promise((resolve) => {
    const finish = (answer) => {
      layer.hidden = true;
      layer.replaceChildren();
      resolve(answer);
    };
    const yes = el(
      'button',
      {
        type: 'button',
        className: `btn ${confirm.style === 'danger' ? 'danger' : 'primary'}`,
        'data-confirm-answer': 'confirm',
      },
      plain(confirm.confirm),
    );
    const no = el(
      'button',
      { type: 'button', className: 'btn', 'data-confirm-answer': 'deny' },
      plain(confirm.deny),
    );
    yes.addEventListener('click', () => finish(true));
    no.addEventListener('click', () => finish(false));

    layer.append(
      el(
        'div',
        {
          className: 'dialog confirm-dialog',
          role: 'alertdialog',
          'aria-modal': 'true',
          'data-testid': 'confirm-dialog',
        },
        el('h3', {}, plain(confirm.title)),
        el('div', { className: 'dialog-body' }, renderText(confirm.text)),
        el('div', { className: 'dialog-buttons' }, no, yes),
      ),
    );
    layer.hidden = false;
    yes.focus();
  });
}

// ----- talking to the sandbox -----

async function post(path, body) {
  const response = await fetch(path, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  });
  let result;
  try {
    result = await response.json();
  } catch {
    result = { ok: false, error: `http_${response.status}` };
  }
  return result;
}

function showStatus(text) {
  $('status').textContent = text;
}

function reportResult(result, actionName) {
  if (result.ok) {
    showStatus('');
    return;
  }
  // The message changed between the render and the click (a fast double click).
  if (result.error === 'element_not_found') {
    showStatus(`${actionName} was not sent: that button is gone because the message just changed. Press the new one.`);
    return;
  }
  showStatus(`${actionName} failed: ${result.message ?? result.error ?? 'unknown error'}`);
}

async function sendClick(where, selection) {
  const body = { user: state.actingUser, ...selection };
  if (where.viewId) {
    body.viewId = where.viewId;
    body.values = collectValues(where.viewId);
  } else {
    body.channel = where.channel;
    body.messageTs = where.messageTs;
  }
  reportResult(await post('/sandbox/click', body), 'The click');
}

async function sendText(text, threadTs) {
  const body = { user: state.actingUser, channel: state.channel, text };
  if (threadTs) body.threadTs = threadTs;
  const result = await post('/sandbox/command', body);
  reportResult(result, text.startsWith('/') ? text.split(/\s/)[0] : 'Sending the message');
  return result;
}

async function advanceClock(ms) {
  const result = await post('/sandbox/clock', { advanceMs: ms });
  if (result.now) setClock(result.now);
  else reportResult(result, 'Moving the clock');
}

// ----- rendering -----

function visibleTo(message) {
  return message.ephemeralTo === null || message.ephemeralTo === state.actingUser;
}

/** Orders messages by ts; every ts has ten digits of seconds, so string order is time order. */
function compareTs(a, b) {
  if (a.ts === b.ts) return 0;
  return a.ts < b.ts ? -1 : 1;
}

function sortedMessages() {
  return [...state.messages.values()].sort(compareTs);
}

function replyCount(parent) {
  return sortedMessages().filter(
    (m) => m.channel === parent.channel && m.threadTs === parent.ts && m.ephemeralTo === null,
  ).length;
}

function renderMessage(message, inThread) {
  const author = message.botId ? 'runbook-bot' : userName(message.userId);
  const item = el('li', {
    className: ['message', message.ephemeralTo ? 'ephemeral' : '', message.botId ? 'from-bot' : '']
      .filter(Boolean)
      .join(' '),
    'data-ts': message.ts,
    'data-channel': message.channel,
    'data-thread-ts': message.threadTs ?? undefined,
    'data-testid': 'message',
  });

  const header = el(
    'div',
    { className: 'message-header' },
    el('span', { className: 'author' }, author),
    message.botId ? el('span', { className: 'badge' }, 'APP') : null,
    el(
      'time',
      { className: 'message-time', datetime: new Date(tsToMs(message.ts)).toISOString() },
      formatMessageTime(message.ts),
    ),
    message.updatedAt !== null ? el('span', { className: 'edited' }, '(edited)') : null,
  );
  item.append(header);

  if (message.threadTs && message.replyBroadcast && !inThread) {
    item.append(el('p', { className: 'note' }, 'replied to a thread'));
  }

  const where = { channel: message.channel, messageTs: message.ts };
  if (message.blocks && message.blocks.length > 0) item.append(renderBlocks(message.blocks, where));
  else item.append(el('div', { className: 'message-text' }, renderMrkdwn(message.text)));

  if (message.ephemeralTo)
    item.append(el('p', { className: 'ephemeral-note' }, 'Only visible to you'));

  if (!inThread && !message.threadTs && message.ephemeralTo === null) {
    const count = replyCount(message);
    const label = count === 0 ? 'Reply in thread' : `${count} ${count === 1 ? 'reply' : 'replies'}`;
    const open = el(
      'button',
      { type: 'button', className: 'thread-link', 'data-open-thread': message.ts },
      label,
    );
    open.addEventListener('click', () => openThread(message.ts));
    item.append(open);
  }
  return item;
}

let scrolledChannel = null;

function renderChannel() {
  const channel = state.channels.find((candidate) => candidate.id === state.channel);
  $('channel-title').textContent = channel ? `#${channel.name}` : '';
  $('channel-topic').textContent = channel ? channel.topic : '';
  $('composer-input').placeholder =
    `Message #${channel ? channel.name : ''}, or type /incident secret-key`;

  const list = $('messages');
  // Follow new messages unless the reader scrolled up; a channel just opened starts at the end.
  const nearBottom =
    scrolledChannel !== state.channel ||
    list.scrollHeight - list.scrollTop - list.clientHeight < 80;
  scrolledChannel = state.channel;
  const items = sortedMessages()
    .filter((m) => m.channel === state.channel && visibleTo(m))
    .filter((m) => !m.threadTs || m.replyBroadcast)
    .map((m) => renderMessage(m, false));
  list.replaceChildren(...items);
  if (nearBottom) list.scrollTop = list.scrollHeight;
}

function renderThread() {
  const pane = $('thread');
  const parent = state.threadTs ? state.messages.get(`${state.channel}:${state.threadTs}`) : null;
  if (!parent) {
    pane.hidden = true;
    return;
  }

  pane.hidden = false;
  const replies = sortedMessages().filter(
    (m) => m.channel === parent.channel && m.threadTs === parent.ts && visibleTo(m),
  );
  const list = $('thread-messages');
  // Follow new replies (reminders, refusals) unless the reader scrolled up.
  const nearBottom =
    scrolledThread !== parent.ts || list.scrollHeight - list.scrollTop - list.clientHeight < 80;
  const count = replies.length;
  list.replaceChildren(renderMessage(parent, true), ...replies.map((m) => renderMessage(m, true)));
  if (nearBottom || count > scrolledThreadCount) list.scrollTop = list.scrollHeight;
  scrolledThread = parent.ts;
  scrolledThreadCount = count;
}

let scrolledThread = null;
let scrolledThreadCount = 0;

function renderSidebar() {
  const acting = $('acting-user');
  const people = state.users.filter((user) => !user.isBot);
  acting.replaceChildren(
    ...people.map((user) => {
      const option = el(
        'option',
        { value: user.id },
        `${user.realName}${user.isGuest ? ' (guest)' : ''}`,
      );
      option.selected = user.id === state.actingUser;
      return option;
    }),
  );

  const me = state.users.find((user) => user.id === state.actingUser);
  const groups = state.userGroups
    .filter((group) => group.users.includes(state.actingUser))
    .map((group) => `@${group.handle}`);
  $('acting-user-note').textContent = me
    ? [
        me.id,
        me.isGuest ? 'guest account' : '',
        groups.length ? `member of ${groups.join(', ')}` : '',
      ]
        .filter(Boolean)
        .join(', ')
    : '';

  $('channel-list').replaceChildren(
    ...state.channels
      .filter((channel) => channel.members.includes(state.actingUser))
      .map((channel) => {
        const button = el(
          'button',
          {
            type: 'button',
            className: channel.id === state.channel ? 'current' : '',
            'data-channel-id': channel.id,
          },
          `# ${channel.name}`,
        );
        button.addEventListener('click', () => selectChannel(channel.id));
        return el('li', {}, button);
      }),
  );
}

function renderClock() {
  const now = new Date(sandboxNow());
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  $('clock-local').textContent =
    `${DAYS[now.getDay()].slice(0, 3)} ${MONTHS[now.getMonth()].slice(0, 3)} ${now.getDate()}, ` +
    `${formatTime(now, true)} (${zone})`;
  $('clock-utc').textContent = `${now.toISOString().replace('T', ' ').slice(0, 19)} UTC`;
}

// ----- modals -----

function topView() {
  const mine = [...state.views.values()].filter((view) => view.userId === state.actingUser);
  if (mine.length === 0) return null;
  // A pushed view is newer than the one below it, and view ids grow with time.
  return mine.sort((a, b) => (a.id < b.id ? 1 : -1))[0];
}

/** Reads the input values of an open modal from the page, by block_id and action_id. */
function collectValues(viewId) {
  const values = {};
  const modal = document.querySelector(`.modal[data-view-id="${CSS.escape(viewId)}"]`);
  if (!modal) return values;

  for (const control of modal.querySelectorAll('[data-input="true"]')) {
    const blockId = control.dataset.blockId;
    const actionId = control.dataset.actionId;
    let value;
    if (control.multiple) value = [...control.selectedOptions].map((option) => option.value);
    else value = control.value === '' ? null : control.value;
    values[blockId] = { ...(values[blockId] ?? {}), [actionId]: value };
  }
  return values;
}

function restoreValues(modal, values) {
  for (const control of modal.querySelectorAll('[data-input="true"]')) {
    const value = values[control.dataset.blockId]?.[control.dataset.actionId];
    if (value === undefined) continue;
    if (control.multiple) {
      for (const option of control.options) option.selected = (value ?? []).includes(option.value);
    } else {
      control.value = value ?? '';
    }
  }
}

let renderedView = { id: null, hash: null, user: null };

/** Renders the acting user's top modal; `force` redraws it even when the view did not change. */
function renderModal(force = false) {
  const layer = $('modal-layer');
  const page = topView();
  if (!page) {
    layer.hidden = true;
    layer.replaceChildren();
    renderedView = { id: null, hash: null, user: null };
    return;
  }

  const view = page.view;
  const sameView = renderedView.id === view.id && renderedView.user === state.actingUser;
  if (sameView && renderedView.hash === view.hash && !force) return;

  // Slack keeps what the user entered when an update keeps the block_id and action_id.
  const enteredValues = sameView ? collectValues(view.id) : {};
  if (!sameView) state.viewErrors = {};

  const where = { viewId: view.id };
  const closeButton = el(
    'button',
    { type: 'button', className: 'btn', 'data-modal-close': 'true' },
    view.close ? plain(view.close) : 'Cancel',
  );
  closeButton.addEventListener('click', () => closeModal(view.id));

  const footer = el('div', { className: 'dialog-buttons' }, closeButton);
  if (view.submit) {
    const submit = el(
      'button',
      { type: 'submit', className: 'btn primary', 'data-modal-submit': 'true' },
      plain(view.submit),
    );
    footer.append(submit);
  }

  const form = el('form', { className: 'modal-body' }, renderBlocks(view.blocks, where), footer);
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    submitModal(view.id);
  });

  const modal = el(
    'div',
    {
      className: 'dialog modal',
      role: 'dialog',
      'aria-modal': 'true',
      'data-view-id': view.id,
      'data-callback-id': view.callback_id,
      'data-testid': 'modal',
    },
    el(
      'header',
      { className: 'modal-header' },
      el('h3', {}, plain(view.title)),
      el('span', { className: 'note' }, page.previousViewId ? 'stacked' : ''),
    ),
    el('p', { className: 'modal-error', role: 'alert', 'data-modal-error': 'true' }),
    form,
  );

  layer.replaceChildren(modal);
  layer.hidden = false;
  restoreValues(modal, enteredValues);
  renderedView = { id: view.id, hash: view.hash, user: state.actingUser };
}

async function submitModal(viewId) {
  const result = await post('/sandbox/submit', {
    user: state.actingUser,
    viewId,
    values: collectValues(viewId),
  });
  const modal = document.querySelector(`.modal[data-view-id="${CSS.escape(viewId)}"]`);

  if (result.errors) {
    state.viewErrors = result.errors;
    renderModal(true);
    return;
  }
  state.viewErrors = {};
  if (!result.ok && modal) {
    modal.querySelector('[data-modal-error]').textContent =
      result.message ?? 'We had some trouble connecting. Try again?';
  }
}

async function closeModal(viewId) {
  const result = await post('/sandbox/close', { user: state.actingUser, viewId });
  reportResult(result, 'Closing the modal');
}

// ----- navigation -----

function selectChannel(id) {
  state.channel = id;
  state.threadTs = null;
  localStorage.setItem('sandbox.channel', id);
  render();
}

function openThread(ts) {
  state.threadTs = ts;
  render();
}

let renderQueued = false;

function render() {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => {
    renderQueued = false;
    renderSidebar();
    renderChannel();
    renderThread();
    renderModal();
    renderClock();
  });
}

function setClock(now) {
  state.clock = { now, receivedAt: performance.now() };
  renderClock();
}

// ----- state and live updates -----

async function loadState() {
  const response = await fetch('/sandbox/state');
  const snapshot = await response.json();
  state.team = snapshot.team;
  state.bot = snapshot.bot;
  state.users = snapshot.users;
  state.channels = snapshot.channels;
  state.userGroups = snapshot.userGroups;
  state.messages = new Map(snapshot.messages.map((m) => [`${m.channel}:${m.ts}`, m]));
  state.views = new Map(snapshot.views.map((v) => [v.id, v]));
  setClock(snapshot.clock.now);

  if (!state.users.some((user) => user.id === state.actingUser && !user.isBot))
    state.actingUser = 'U0SBXALEX';
  const member = state.channels.find(
    (c) => c.id === state.channel && c.members.includes(state.actingUser),
  );
  if (!member)
    state.channel = state.channels.find((c) => c.members.includes(state.actingUser))?.id ?? null;
  render();
}

function applyChange(change) {
  switch (change.type) {
    case 'message':
      state.messages.set(`${change.message.channel}:${change.message.ts}`, change.message);
      break;
    case 'message_deleted':
      state.messages.delete(`${change.channel}:${change.ts}`);
      break;
    case 'view_opened':
    case 'view_updated':
      state.views.set(change.view.id, change.view);
      break;
    case 'view_closed':
      state.views.delete(change.viewId);
      break;
    case 'clock':
      setClock(change.now);
      break;
    default:
      return;
  }
  render();
}

function connect() {
  const stream = new EventSource('/sandbox/stream');
  let lost = false;
  stream.addEventListener('change', (event) => applyChange(JSON.parse(event.data)));
  stream.addEventListener('error', () => {
    lost = true;
    showStatus('Lost the connection to the sandbox; reconnecting…');
  });
  stream.addEventListener('open', () => {
    document.body.dataset.connected = 'true';
    if (lost) {
      lost = false;
      showStatus('');
      loadState();
    }
  });
}

function wireControls() {
  $('acting-user').addEventListener('change', (event) => {
    state.actingUser = event.target.value;
    localStorage.setItem('sandbox.user', state.actingUser);
    const member = state.channels.find(
      (c) => c.id === state.channel && c.members.includes(state.actingUser),
    );
    if (!member)
      state.channel = state.channels.find((c) => c.members.includes(state.actingUser))?.id ?? null;
    state.viewErrors = {};
    render();
  });

  for (const button of document.querySelectorAll('[data-advance-ms]')) {
    button.addEventListener('click', () => advanceClock(Number(button.dataset.advanceMs)));
  }

  const wireComposer = (formId, inputId, threadTs) => {
    const form = $(formId);
    const input = $(inputId);
    const send = async () => {
      const text = input.value;
      if (text.trim() === '') return;
      const result = await sendText(text, threadTs());
      if (result.ok || result.error === 'dispatch_failed' || result.error === 'operation_timeout')
        input.value = '';
    };
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      send();
    });
    input.addEventListener('keydown', (event) => {
      if (event.key === 'Enter' && !event.shiftKey) {
        event.preventDefault();
        send();
      }
    });
  };
  wireComposer('composer', 'composer-input', () => undefined);
  wireComposer('thread-composer', 'thread-input', () => state.threadTs);

  $('thread-close').addEventListener('click', () => {
    state.threadTs = null;
    render();
  });

  setInterval(renderClock, 1000);
}

wireControls();
loadState().then(connect);
