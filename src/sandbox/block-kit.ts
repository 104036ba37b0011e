import { randomBytes } from 'node:crypto';

/**
 * Block Kit validation for the sandbox's Slack double. Limits follow the
 * @slack/types definitions (node-slack-sdk packages/types: blocks.ts,
 * block-elements.ts, composition-objects.ts, views.ts) and Slack's Block Kit
 * reference. The double accepts only the block and element types that the
 * sandbox page can render, and it rejects unknown properties, so a typo such
 * as `acton_id` fails here as it fails in Slack.
 */

export const MAX_MESSAGE_BLOCKS = 50;
export const MAX_MODAL_BLOCKS = 100;
export const MAX_MESSAGE_TEXT = 40_000;

// NOTE: Slack does not document the cumulative limit behind
// `msg_blocks_too_long`. Reports from bolt-js users put it between about
// 13,170 and 13,300 characters of text across all blocks, depending on the
// block types, so 13,000 is an estimate that errs on the strict side.
export const MAX_MESSAGE_BLOCK_TEXT_ESTIMATE = 13_000;

/** Slack rejects a view whose JSON is larger than 250 kB (`view_too_large`). */
export const MAX_VIEW_BYTES = 250_000;

export type Surface = 'message' | 'modal';

/** One validation problem: the JSON pointer of the value and what is wrong with it. */
export interface BlockKitIssue {
  pointer: string;
  message: string;
}

export type MessageCheck =
  | { ok: true }
  | {
      ok: false;
      error: 'invalid_blocks' | 'invalid_blocks_format' | 'msg_too_long' | 'msg_blocks_too_long';
      issues: BlockKitIssue[];
    };

type Json = Record<string, unknown>;

const BLOCK_KEYS: Record<string, readonly string[]> = {
  header: ['text'],
  section: ['text', 'fields', 'accessory', 'expand'],
  context: ['elements'],
  divider: [],
  actions: ['elements'],
  input: ['label', 'element', 'hint', 'optional', 'dispatch_action'],
  image: ['image_url', 'alt_text', 'title', 'slack_file'],
};

const ELEMENT_KEYS: Record<string, readonly string[]> = {
  button: ['text', 'action_id', 'url', 'value', 'style', 'confirm', 'accessibility_label'],
  static_select: [
    'action_id',
    'placeholder',
    'options',
    'option_groups',
    'initial_option',
    'confirm',
    'focus_on_load',
  ],
  users_select: ['action_id', 'placeholder', 'initial_user', 'confirm', 'focus_on_load'],
  multi_users_select: [
    'action_id',
    'placeholder',
    'initial_users',
    'confirm',
    'max_selected_items',
    'focus_on_load',
  ],
  plain_text_input: [
    'action_id',
    'placeholder',
    'initial_value',
    'multiline',
    'min_length',
    'max_length',
    'dispatch_action_config',
    'focus_on_load',
  ],
  image: ['image_url', 'alt_text', 'slack_file'],
};

const SELECTS = ['static_select', 'users_select', 'multi_users_select'];
const ACCESSORY_TYPES = ['button', 'image', ...SELECTS];
const ACTIONS_TYPES = ['button', ...SELECTS];
const INPUT_TYPES = ['plain_text_input', ...SELECTS];

const VIEW_KEYS = [
  'type',
  'title',
  'blocks',
  'close',
  'submit',
  'private_metadata',
  'callback_id',
  'clear_on_close',
  'notify_on_close',
  'external_id',
  'submit_disabled',
];

/** Collects issues while walking blocks, and the block_ids seen so far. */
class Walk {
  readonly issues: BlockKitIssue[] = [];
  readonly blockIds = new Set<string>();

  add(pointer: string, message: string): void {
    this.issues.push({ pointer, message });
  }
}

/** Formats an issue the way Slack does in `errors` and `response_metadata.messages`. */
export function formatIssue(issue: BlockKitIssue): string {
  return `${issue.message} [json-pointer:${issue.pointer}]`;
}

/**
 * Checks the text and blocks of a message (chat.postMessage, chat.update,
 * chat.postEphemeral, command replies and response_url posts). `blocks` is
 * the parsed JSON value, or undefined when the caller sent none.
 */
export function checkMessage(text: string | undefined, blocks: unknown): MessageCheck {
  if (text !== undefined && characterCount(text) > MAX_MESSAGE_TEXT) {
    // NOTE: Slack's changelog (2018-04) states that chat.postMessage truncates text
    // over 40,000 characters and warns, and its error list has
    // `msg_too_long`. The double rejects, so a bot never relies on truncation.
    const message = `must be at most ${MAX_MESSAGE_TEXT} characters, got ${characterCount(text)}`;
    return { ok: false, error: 'msg_too_long', issues: [{ pointer: '/text', message }] };
  }

  if (blocks === undefined) return { ok: true };

  if (!Array.isArray(blocks)) {
    const issue = { pointer: '/blocks', message: 'must be a JSON array of blocks' };
    return { ok: false, error: 'invalid_blocks_format', issues: [issue] };
  }

  const issues = validateBlocks(blocks, 'message', '/blocks');
  if (issues.length > 0) return { ok: false, error: 'invalid_blocks', issues };

  const textLength = blockTextLength(blocks);
  if (textLength > MAX_MESSAGE_BLOCK_TEXT_ESTIMATE) {
    const message =
      `text across all blocks must be at most about ${MAX_MESSAGE_BLOCK_TEXT_ESTIMATE} ` +
      `characters, got ${textLength}`;
    return { ok: false, error: 'msg_blocks_too_long', issues: [{ pointer: '/blocks', message }] };
  }

  return { ok: true };
}

/** Validates a modal view object; pointers start at `/view` as in Slack's errors. */
export function validateView(view: unknown): BlockKitIssue[] {
  const walk = new Walk();

  if (!isObject(view)) {
    walk.add('/view', 'must be a JSON object');
    return walk.issues;
  }

  checkKeys(walk, view, VIEW_KEYS, '/view');

  if (view.type !== 'modal') {
    walk.add('/view/type', `must be "modal", got ${describe(view.type)}`);
  }

  checkText(walk, view.title, '/view/title', { plainOnly: true, max: 24, required: true });
  checkText(walk, view.close, '/view/close', { plainOnly: true, max: 24 });
  checkText(walk, view.submit, '/view/submit', { plainOnly: true, max: 24 });
  checkString(walk, view.private_metadata, '/view/private_metadata', { max: 3000, min: 0 });
  checkString(walk, view.callback_id, '/view/callback_id', { max: 255, min: 0 });
  checkString(walk, view.external_id, '/view/external_id', { max: 255 });
  checkBoolean(walk, view.clear_on_close, '/view/clear_on_close');
  checkBoolean(walk, view.notify_on_close, '/view/notify_on_close');
  checkBoolean(walk, view.submit_disabled, '/view/submit_disabled');

  if (!Array.isArray(view.blocks)) {
    walk.add('/view/blocks', 'missing required field: blocks (a JSON array)');
    return walk.issues;
  }

  walk.issues.push(...validateBlocks(view.blocks, 'modal', '/view/blocks'));

  const hasInput = view.blocks.some((block) => isObject(block) && block.type === 'input');
  if (hasInput && view.submit === undefined) {
    walk.add('/view/submit', 'missing required field: submit (a modal with input blocks needs it)');
  }

  return walk.issues;
}

/** Validates an array of blocks for a message or a modal. */
export function validateBlocks(blocks: unknown[], surface: Surface, base: string): BlockKitIssue[] {
  const walk = new Walk();
  const max = surface === 'message' ? MAX_MESSAGE_BLOCKS : MAX_MODAL_BLOCKS;

  if (blocks.length > max) {
    walk.add(base, `no more than ${max} blocks allowed, got ${blocks.length}`);
  }

  blocks.forEach((block, index) => checkBlock(walk, block, `${base}/${index}`));
  return walk.issues;
}

function checkBlock(walk: Walk, block: unknown, pointer: string): void {
  if (!isObject(block)) {
    walk.add(pointer, 'must be a JSON object');
    return;
  }

  const type = block.type;
  if (typeof type !== 'string' || !Object.hasOwn(BLOCK_KEYS, type)) {
    walk.add(`${pointer}/type`, `unsupported block type ${describe(type)}`);
    return;
  }

  checkKeys(walk, block, ['type', 'block_id', ...BLOCK_KEYS[type]], pointer);

  if (block.block_id !== undefined) {
    checkString(walk, block.block_id, `${pointer}/block_id`, { max: 255 });
    if (typeof block.block_id === 'string') {
      if (walk.blockIds.has(block.block_id)) {
        walk.add(`${pointer}/block_id`, `duplicate block_id "${block.block_id}"`);
      }
      walk.blockIds.add(block.block_id);
    }
  }

  const actionIds = new Set<string>();
  switch (type) {
    case 'header':
      checkText(walk, block.text, `${pointer}/text`, { plainOnly: true, max: 150, required: true });
      break;
    case 'section':
      checkSection(walk, block, pointer, actionIds);
      break;
    case 'context':
      checkContext(walk, block, pointer);
      break;
    case 'actions':
      checkElementList(walk, block.elements, `${pointer}/elements`, {
        types: ACTIONS_TYPES,
        max: 25,
        actionIds,
      });
      break;
    case 'input':
      checkInput(walk, block, pointer, actionIds);
      break;
    case 'image':
      checkString(walk, block.alt_text, `${pointer}/alt_text`, { max: 2000, required: true });
      checkString(walk, block.image_url, `${pointer}/image_url`, { max: 3000, required: true });
      checkText(walk, block.title, `${pointer}/title`, { plainOnly: true, max: 2000 });
      break;
    default:
      break;
  }
}

function checkSection(walk: Walk, block: Json, pointer: string, actionIds: Set<string>): void {
  if (block.text === undefined && block.fields === undefined) {
    walk.add(pointer, 'must provide text or fields');
  }

  checkText(walk, block.text, `${pointer}/text`, { max: 3000 });

  if (block.fields !== undefined) {
    if (!Array.isArray(block.fields)) {
      walk.add(`${pointer}/fields`, 'must be an array of text objects');
    } else {
      if (block.fields.length === 0 || block.fields.length > 10) {
        walk.add(`${pointer}/fields`, `must have 1 to 10 items, got ${block.fields.length}`);
      }
      block.fields.forEach((field, index) => {
        checkText(walk, field, `${pointer}/fields/${index}`, { max: 2000, required: true });
      });
    }
  }

  if (block.accessory !== undefined) {
    checkElement(walk, block.accessory, `${pointer}/accessory`, ACCESSORY_TYPES, actionIds);
  }

  checkBoolean(walk, block.expand, `${pointer}/expand`);
}

function checkContext(walk: Walk, block: Json, pointer: string): void {
  const elements = block.elements;
  if (!Array.isArray(elements)) {
    walk.add(`${pointer}/elements`, 'missing required field: elements (an array)');
    return;
  }

  if (elements.length === 0 || elements.length > 10) {
    walk.add(`${pointer}/elements`, `must have 1 to 10 items, got ${elements.length}`);
  }

  elements.forEach((element, index) => {
    const elementPointer = `${pointer}/elements/${index}`;
    if (isObject(element) && element.type === 'image') {
      checkElement(walk, element, elementPointer, ['image'], new Set());
    } else {
      checkText(walk, element, elementPointer, { max: 3000, required: true });
    }
  });
}

function checkInput(walk: Walk, block: Json, pointer: string, actionIds: Set<string>): void {
  checkText(walk, block.label, `${pointer}/label`, { plainOnly: true, max: 2000, required: true });
  checkText(walk, block.hint, `${pointer}/hint`, { plainOnly: true, max: 2000 });
  checkBoolean(walk, block.optional, `${pointer}/optional`);
  checkBoolean(walk, block.dispatch_action, `${pointer}/dispatch_action`);

  if (block.element === undefined) {
    walk.add(`${pointer}/element`, 'missing required field: element');
    return;
  }

  checkElement(walk, block.element, `${pointer}/element`, INPUT_TYPES, actionIds);
}

interface ElementListRules {
  types: string[];
  max: number;
  actionIds: Set<string>;
}

function checkElementList(walk: Walk, elements: unknown, pointer: string, rules: ElementListRules) {
  if (!Array.isArray(elements)) {
    walk.add(pointer, 'missing required field: elements (an array)');
    return;
  }

  if (elements.length === 0 || elements.length > rules.max) {
    walk.add(pointer, `must have 1 to ${rules.max} items, got ${elements.length}`);
  }

  elements.forEach((element, index) => {
    checkElement(walk, element, `${pointer}/${index}`, rules.types, rules.actionIds);
  });
}

function checkElement(
  walk: Walk,
  element: unknown,
  pointer: string,
  allowedTypes: string[],
  actionIds: Set<string>,
): void {
  if (!isObject(element)) {
    walk.add(pointer, 'must be a JSON object');
    return;
  }

  const type = element.type;
  if (typeof type !== 'string' || !allowedTypes.includes(type)) {
    const allowed = allowedTypes.join(', ');
    walk.add(
      `${pointer}/type`,
      `unsupported element type ${describe(type)}; use one of ${allowed}`,
    );
    return;
  }

  checkKeys(walk, element, ['type', ...ELEMENT_KEYS[type]], pointer);

  if (element.action_id !== undefined) {
    checkString(walk, element.action_id, `${pointer}/action_id`, { max: 255 });
    if (typeof element.action_id === 'string') {
      if (actionIds.has(element.action_id)) {
        walk.add(
          `${pointer}/action_id`,
          `duplicate action_id "${element.action_id}" in this block`,
        );
      }
      actionIds.add(element.action_id);
    }
  }

  if (element.confirm !== undefined) checkConfirm(walk, element.confirm, `${pointer}/confirm`);
  checkBoolean(walk, element.focus_on_load, `${pointer}/focus_on_load`);

  switch (type) {
    case 'button':
      checkButton(walk, element, pointer);
      break;
    case 'static_select':
      checkStaticSelect(walk, element, pointer);
      break;
    case 'users_select':
      checkText(walk, element.placeholder, `${pointer}/placeholder`, { plainOnly: true, max: 150 });
      checkString(walk, element.initial_user, `${pointer}/initial_user`, { max: 255 });
      break;
    case 'multi_users_select':
      checkMultiUsersSelect(walk, element, pointer);
      break;
    case 'plain_text_input':
      checkPlainTextInput(walk, element, pointer);
      break;
    case 'image':
      checkString(walk, element.alt_text, `${pointer}/alt_text`, { max: 2000, required: true });
      checkString(walk, element.image_url, `${pointer}/image_url`, { max: 3000, required: true });
      break;
    default:
      break;
  }
}

function checkButton(walk: Walk, element: Json, pointer: string): void {
  checkText(walk, element.text, `${pointer}/text`, { plainOnly: true, max: 75, required: true });
  checkString(walk, element.value, `${pointer}/value`, { max: 2000, min: 0 });
  checkString(walk, element.url, `${pointer}/url`, { max: 3000 });
  checkString(walk, element.accessibility_label, `${pointer}/accessibility_label`, { max: 75 });

  if (element.style !== undefined && element.style !== 'primary' && element.style !== 'danger') {
    walk.add(`${pointer}/style`, `must be "primary" or "danger", got ${describe(element.style)}`);
  }
}

function checkConfirm(walk: Walk, confirm: unknown, pointer: string): void {
  if (!isObject(confirm)) {
    walk.add(pointer, 'must be a confirmation dialog object');
    return;
  }

  checkKeys(walk, confirm, ['title', 'text', 'confirm', 'deny', 'style'], pointer);
  checkText(walk, confirm.title, `${pointer}/title`, { plainOnly: true, max: 100, required: true });
  checkText(walk, confirm.text, `${pointer}/text`, { max: 300, required: true });
  checkText(walk, confirm.confirm, `${pointer}/confirm`, {
    plainOnly: true,
    max: 30,
    required: true,
  });
  checkText(walk, confirm.deny, `${pointer}/deny`, { plainOnly: true, max: 30, required: true });

  if (confirm.style !== undefined && confirm.style !== 'primary' && confirm.style !== 'danger') {
    walk.add(`${pointer}/style`, `must be "primary" or "danger", got ${describe(confirm.style)}`);
  }
}

function checkStaticSelect(walk: Walk, element: Json, pointer: string): void {
  checkText(walk, element.placeholder, `${pointer}/placeholder`, { plainOnly: true, max: 150 });

  const values: string[] = [];
  if (element.options !== undefined && element.option_groups !== undefined) {
    walk.add(pointer, 'must provide options or option_groups, not both');
  } else if (element.options !== undefined) {
    checkOptions(walk, element.options, `${pointer}/options`, values);
  } else if (Array.isArray(element.option_groups)) {
    if (element.option_groups.length === 0 || element.option_groups.length > 100) {
      const count = element.option_groups.length;
      walk.add(`${pointer}/option_groups`, `must have 1 to 100 items, got ${count}`);
    }
    element.option_groups.forEach((group, index) => {
      const groupPointer = `${pointer}/option_groups/${index}`;
      if (!isObject(group)) {
        walk.add(groupPointer, 'must be an option group object');
        return;
      }
      checkKeys(walk, group, ['label', 'options'], groupPointer);
      checkText(walk, group.label, `${groupPointer}/label`, {
        plainOnly: true,
        max: 75,
        required: true,
      });
      checkOptions(walk, group.options, `${groupPointer}/options`, values);
    });
  } else {
    walk.add(pointer, 'missing required field: options or option_groups');
  }

  if (element.initial_option !== undefined) {
    const initialPointer = `${pointer}/initial_option`;
    const initialValues: string[] = [];
    checkOption(walk, element.initial_option, initialPointer, initialValues);
    if (initialValues.length === 1 && !values.includes(initialValues[0])) {
      walk.add(initialPointer, `must be one of the options, got value "${initialValues[0]}"`);
    }
  }
}

function checkOptions(walk: Walk, options: unknown, pointer: string, values: string[]): void {
  if (!Array.isArray(options)) {
    walk.add(pointer, 'must be an array of option objects');
    return;
  }

  if (options.length === 0 || options.length > 100) {
    walk.add(pointer, `must have 1 to 100 items, got ${options.length}`);
  }

  options.forEach((option, index) => checkOption(walk, option, `${pointer}/${index}`, values));
}

function checkOption(walk: Walk, option: unknown, pointer: string, values: string[]): void {
  if (!isObject(option)) {
    walk.add(pointer, 'must be an option object');
    return;
  }

  checkKeys(walk, option, ['text', 'value', 'description', 'url'], pointer);
  checkText(walk, option.text, `${pointer}/text`, { plainOnly: true, max: 75, required: true });
  checkText(walk, option.description, `${pointer}/description`, { plainOnly: true, max: 75 });
  checkString(walk, option.value, `${pointer}/value`, { max: 150, required: true });
  if (typeof option.value === 'string') values.push(option.value);
}

function checkMultiUsersSelect(walk: Walk, element: Json, pointer: string): void {
  checkText(walk, element.placeholder, `${pointer}/placeholder`, { plainOnly: true, max: 150 });

  if (element.initial_users !== undefined) {
    const initial = element.initial_users;
    const valid = Array.isArray(initial) && initial.every((user) => typeof user === 'string');
    if (!valid) walk.add(`${pointer}/initial_users`, 'must be an array of user IDs');
  }

  const maxItems = element.max_selected_items;
  if (maxItems !== undefined && (!Number.isInteger(maxItems) || (maxItems as number) < 1)) {
    walk.add(
      `${pointer}/max_selected_items`,
      `must be an integer of at least 1, got ${describe(maxItems)}`,
    );
  }
}

function checkPlainTextInput(walk: Walk, element: Json, pointer: string): void {
  checkText(walk, element.placeholder, `${pointer}/placeholder`, { plainOnly: true, max: 150 });
  checkBoolean(walk, element.multiline, `${pointer}/multiline`);

  const minLength = element.min_length;
  const maxLength = element.max_length;
  checkInteger(walk, minLength, `${pointer}/min_length`, 0, 3000);
  checkInteger(walk, maxLength, `${pointer}/max_length`, 1, 3000);

  if (typeof minLength === 'number' && typeof maxLength === 'number' && minLength > maxLength) {
    walk.add(
      `${pointer}/min_length`,
      `must not exceed max_length (${maxLength}), got ${minLength}`,
    );
  }

  const limit = typeof maxLength === 'number' ? maxLength : 3000;
  checkString(walk, element.initial_value, `${pointer}/initial_value`, { max: limit, min: 0 });
}

interface TextRules {
  plainOnly?: boolean;
  max: number;
  required?: boolean;
}

function checkText(walk: Walk, value: unknown, pointer: string, rules: TextRules): void {
  if (value === undefined) {
    if (rules.required) walk.add(pointer, 'missing required field: a text object');
    return;
  }

  if (!isObject(value)) {
    walk.add(pointer, `must be a text object, got ${describe(value)}`);
    return;
  }

  if (value.type !== 'plain_text' && value.type !== 'mrkdwn') {
    walk.add(`${pointer}/type`, `must be "plain_text" or "mrkdwn", got ${describe(value.type)}`);
    return;
  }

  if (rules.plainOnly && value.type !== 'plain_text') {
    walk.add(`${pointer}/type`, 'must be "plain_text" here');
  }

  const extra = value.type === 'plain_text' ? 'emoji' : 'verbatim';
  checkKeys(walk, value, ['type', 'text', extra], pointer);
  checkBoolean(walk, value[extra], `${pointer}/${extra}`);
  checkString(walk, value.text, `${pointer}/text`, { max: rules.max, required: true });
}

interface StringRules {
  max: number;
  min?: number;
  required?: boolean;
}

function checkString(walk: Walk, value: unknown, pointer: string, rules: StringRules): void {
  if (value === undefined) {
    if (rules.required) walk.add(pointer, 'missing required field: a string');
    return;
  }

  if (typeof value !== 'string') {
    walk.add(pointer, `must be a string, got ${describe(value)}`);
    return;
  }

  const length = characterCount(value);
  const min = rules.min ?? 1;
  if (length < min) walk.add(pointer, `must be at least ${min} characters, got ${length}`);
  if (length > rules.max)
    walk.add(pointer, `must be at most ${rules.max} characters, got ${length}`);
}

function checkBoolean(walk: Walk, value: unknown, pointer: string): void {
  if (value !== undefined && typeof value !== 'boolean') {
    walk.add(pointer, `must be a boolean, got ${describe(value)}`);
  }
}

function checkInteger(walk: Walk, value: unknown, pointer: string, min: number, max: number): void {
  if (value === undefined) return;
  if (!Number.isInteger(value) || (value as number) < min || (value as number) > max) {
    walk.add(pointer, `must be an integer from ${min} to ${max}, got ${describe(value)}`);
  }
}

function checkKeys(walk: Walk, value: Json, allowed: readonly string[], pointer: string): void {
  for (const key of Object.keys(value)) {
    if (!allowed.includes(key)) walk.add(`${pointer}/${key}`, `unknown property "${key}"`);
  }
}

/** Counts the characters of text in every text object, field and option of the blocks. */
export function blockTextLength(blocks: unknown[]): number {
  let total = 0;

  const visit = (value: unknown): void => {
    if (Array.isArray(value)) {
      value.forEach(visit);
      return;
    }
    if (!isObject(value)) return;
    if (
      (value.type === 'plain_text' || value.type === 'mrkdwn') &&
      typeof value.text === 'string'
    ) {
      total += characterCount(value.text);
      return;
    }
    Object.values(value).forEach(visit);
  };

  visit(blocks);
  return total;
}

/**
 * Returns a deep copy of the blocks in which every block has a block_id and
 * every interactive element an action_id, generated where missing, as Slack
 * does when it stores a message or a view.
 */
export function withGeneratedIds(blocks: unknown[]): unknown[] {
  const copy = structuredClone(blocks) as Json[];
  const usedBlockIds = new Set(copy.map((block) => block.block_id));

  for (const block of copy) {
    if (block.block_id === undefined) {
      block.block_id = generatedId(usedBlockIds);
      usedBlockIds.add(block.block_id);
    }

    const elements = blockElements(block);
    const usedActionIds = new Set(elements.map((element) => element.action_id));
    for (const element of elements) {
      if (element.type !== 'image' && element.action_id === undefined) {
        element.action_id = generatedId(usedActionIds);
        usedActionIds.add(element.action_id);
      }
    }
  }

  return copy;
}

/** An element found in a message or view, with the block that contains it. */
export interface FoundElement {
  block: Json;
  element: Json;
}

/** Finds the interactive element with `actionId` in the block with `blockId`. */
export function findElement(
  blocks: unknown,
  blockId: string,
  actionId: string,
): FoundElement | undefined {
  if (!Array.isArray(blocks)) return undefined;

  for (const block of blocks) {
    if (!isObject(block) || block.block_id !== blockId) continue;
    const element = blockElements(block).find((candidate) => candidate.action_id === actionId);
    if (element) return { block, element };
  }

  return undefined;
}

/** Lists the input blocks of a view, each with its element. */
export function inputBlocks(blocks: unknown): FoundElement[] {
  if (!Array.isArray(blocks)) return [];

  return blocks
    .filter((block): block is Json => isObject(block) && block.type === 'input')
    .filter((block) => isObject(block.element))
    .map((block) => ({ block, element: block.element as Json }));
}

function blockElements(block: Json): Json[] {
  if (block.type === 'actions' && Array.isArray(block.elements)) {
    return block.elements.filter(isObject);
  }
  if (block.type === 'section' && isObject(block.accessory)) return [block.accessory];
  if (block.type === 'input' && isObject(block.element)) return [block.element];
  return [];
}

/** Generates a short random id like Slack's, one that is not yet in `used`. */
function generatedId(used: Set<unknown>): string {
  for (;;) {
    const id = randomBytes(4).toString('base64url').slice(0, 5);
    if (!used.has(id)) return id;
  }
}

export function isObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function characterCount(text: string): number {
  let count = 0;
  for (const _ of text) count++;
  return count;
}

function describe(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (typeof value === 'string') {
    const shortened = value.length > 40 ? `${value.slice(0, 40)}…` : value;
    return `"${shortened}"`;
  }
  if (Array.isArray(value)) return 'an array';
  if (value === null) return 'null';
  return typeof value === 'object' ? 'an object' : String(value);
}
