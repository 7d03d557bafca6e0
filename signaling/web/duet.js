// duet.js: duet's signaling for the browser (contacts, presence, chat with receipts), speaking
// the protocol of signaling/PROTOCOL.md over a WebSocket to `duet serve`.
//
//   import { Duet } from '/duet.js';
//   const client = await Duet.connect({ user: 'alice', token });
//   client.on('chat', (m) => console.log(m.from, m.text));
//   await client.chat('bob', 'lunch?');
//
// Plain modern JavaScript, no build step.

const PROTOCOL_VERSION = 1;
const PING_EVERY_MS = 30000;
const LOGIN_TIMEOUT_MS = 10000;
const REQUEST_TIMEOUT_MS = 10000;
const STATUSES = ['online', 'away', 'busy', 'invisible'];

/** An error from duet: `code` is the protocol's error code (`bad_credentials`, `not_contact`, ...). */
export class DuetError extends Error {
  constructor(code, message) {
    super(message);
    this.name = 'DuetError';
    this.code = code;
  }
}

/** The WebSocket URL of the server: `server` as given (http(s) becomes ws(s)), or this page's own. */
function socketUrl(server) {
  if (!server) {
    const scheme = globalThis.location.protocol === 'https:' ? 'wss:' : 'ws:';
    return `${scheme}//${globalThis.location.host}/`;
  }
  const url = new URL(server, globalThis.location ? globalThis.location.href : undefined);
  if (url.protocol === 'http:') url.protocol = 'ws:';
  if (url.protocol === 'https:') url.protocol = 'wss:';
  if (url.protocol !== 'ws:' && url.protocol !== 'wss:') {
    throw new DuetError('invalid', `not a duet server address: ${server}`);
  }
  return url.href;
}

function randomId() {
  const bytes = new Uint8Array(8);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

/**
 * A logged-in connection to a duet server. Made by `Duet.connect`.
 *
 * Events (`client.on(name, handler)`):
 * - `chat`: `{ from, id, text, seq }`, once per message (repeats after a reconnection are dropped);
 * - `receipt`: `{ from, id }`, the contact's client has the message `id` sent to it;
 * - `presence`: `{ user, status, note }`;
 * - `contact`: `{ user, change, contact }`, where `change` is `request`, `accepted`, `declined`,
 *   `removed` or `list` (the whole list was read again) and `contact` the entry now (or null);
 * - `typing`: `{ from, active }`; `nudge`: `{ from }`;
 * - `error`: a `DuetError` the server sent that answers no request;
 * - `closed`: `{ code, reason, error }` once the connection is over (`error` is the `DuetError`
 *   that ended it, such as `replaced`, or null).
 */
export class DuetClient {
  constructor(ws, user) {
    this.user = user;
    this.status = 'online';
    this.note = '';
    /** The contact list: name -> `{ user, link, blocked, status, note }`. */
    this.contacts = new Map();
    this._ws = ws;
    this._nextRid = 1;
    this._pending = new Map();
    this._handlers = new Map();
    this._seen = new Set();
    this._confirm = 0;
    this._confirmQueued = false;
    this._fatal = null;
    this._closed = false;
    this._ping = null;
  }

  /** Calls `handler(event)` for every event named `name`; returns a function that stops it. */
  on(name, handler) {
    if (!this._handlers.has(name)) this._handlers.set(name, new Set());
    this._handlers.get(name).add(handler);
    return () => this._handlers.get(name).delete(handler);
  }

  /** Sends `text` to contact `name`; resolves with `{ id, seq }` once the server has taken it. */
  async chat(name, text) {
    const id = randomId();
    const reply = await this._request({ type: 'chat', to: name, id, text: String(text) });
    return { id, seq: reply.seq };
  }

  /** Sets my presence (`online`, `away`, `busy`, `invisible`) and personal note. */
  async setPresence(status, note = undefined) {
    if (!STATUSES.includes(status)) {
      throw new DuetError('invalid', `unknown status ${status}: use one of ${STATUSES.join(', ')}`);
    }
    const msg = { type: 'presence', status };
    if (note !== undefined) msg.note = String(note);
    await this._request(msg);
    this.status = status;
    if (note !== undefined) this.note = msg.note;
  }

  /** Asks `name` to be a contact (or accepts their request). */
  addContact(name) { return this._contactChange('contact_add', name); }
  /** Accepts `name`'s request. */
  acceptContact(name) { return this._contactChange('contact_accept', name); }
  /** Declines `name`'s request. */
  declineContact(name) { return this._contactChange('contact_decline', name); }
  /** Blocks `name`: they see me offline and what they send me is dropped. */
  blockContact(name) { return this._contactChange('contact_block', name); }
  /** Unblocks `name`. */
  unblockContact(name) { return this._contactChange('contact_unblock', name); }
  /** Ends the relationship with `name` on both sides (or withdraws a request). */
  removeContact(name) { return this._contactChange('contact_remove', name); }

  /** Reads the contact list from the server again; resolves with it as an array. */
  async refreshContacts() {
    const reply = await this._request({ type: 'contact_list' });
    this._setContacts(reply.contacts);
    return [...this.contacts.values()];
  }

  /** Tells `name` I am typing (or stopped). */
  typing(name, active) {
    this._send({ type: 'typing', to: name, active: Boolean(active) });
  }

  /** Nudges `name` (at most once every 5 s). */
  nudge(name) { return this._request({ type: 'nudge', to: name }); }

  /** Closes the connection; `closed` follows. */
  close() {
    this._ws.close(1000, 'bye');
  }

  async _contactChange(type, name) {
    await this._request({ type, user: name });
    await this.refreshContacts();
  }

  _emit(name, event) {
    const handlers = this._handlers.get(name);
    if (!handlers) return;
    for (const h of [...handlers]) {
      try {
        h(event);
      } catch (e) {
        console.error(`duet: a ${name} handler failed`, e);
      }
    }
  }

  _send(msg) {
    if (this._closed) throw new DuetError('closed', 'the connection to the server is closed');
    this._ws.send(JSON.stringify(msg));
  }

  _request(msg) {
    return new Promise((resolve, reject) => {
      if (this._closed) {
        reject(new DuetError('closed', 'the connection to the server is closed'));
        return;
      }
      const rid = this._nextRid++;
      const timer = setTimeout(() => {
        this._pending.delete(rid);
        reject(new DuetError('timeout', `no answer from the server to ${msg.type}`));
      }, REQUEST_TIMEOUT_MS);
      this._pending.set(rid, { resolve, reject, timer });
      this._send({ ...msg, rid });
    });
  }

  /** Confirms every chat and receipt up to `seq`, once per batch. */
  _received(seq) {
    this._confirm = Math.max(this._confirm, seq);
    if (this._confirmQueued) return;
    this._confirmQueued = true;
    queueMicrotask(() => {
      this._confirmQueued = false;
      if (!this._closed) this._send({ type: 'received', seq: this._confirm });
    });
  }

  _setContacts(list) {
    this.contacts = new Map(list.map((c) => [c.user, { ...c }]));
    this._emit('contact', { user: null, change: 'list', contact: null });
  }

  _handle(msg) {
    if (msg.rid !== undefined && this._pending.has(msg.rid)) {
      const p = this._pending.get(msg.rid);
      this._pending.delete(msg.rid);
      clearTimeout(p.timer);
      if (msg.type === 'error') p.reject(new DuetError(msg.code, msg.message));
      else p.resolve(msg);
      return;
    }
    switch (msg.type) {
      case 'contacts':
        this._setContacts(msg.contacts);
        break;
      case 'chat': {
        const key = `${msg.from}\n${msg.id}`;
        if (!this._seen.has(key)) {
          this._seen.add(key);
          this._emit('chat', { from: msg.from, id: msg.id, text: msg.text, seq: msg.seq });
        }
        this._received(msg.seq);
        break;
      }
      case 'receipt':
        this._emit('receipt', { from: msg.from, id: msg.id });
        this._received(msg.seq);
        break;
      case 'presence': {
        const c = this.contacts.get(msg.from);
        if (c) {
          c.status = msg.status;
          c.note = msg.note ?? '';
        }
        this._emit('presence', { user: msg.from, status: msg.status, note: msg.note ?? '' });
        break;
      }
      case 'contact_request':
        this.contacts.set(msg.from, {
          user: msg.from, link: 'incoming', blocked: false, status: 'offline', note: '',
        });
        this._emit('contact', { user: msg.from, change: 'request', contact: this.contacts.get(msg.from) });
        break;
      case 'contact_update':
        // Presence and link come with the list: read it again, then tell.
        this.refreshContacts().then(
          () => this._emit('contact', {
            user: msg.user, change: msg.change, contact: this.contacts.get(msg.user) ?? null,
          }),
          () => {},
        );
        break;
      case 'typing':
        this._emit('typing', { from: msg.from, active: msg.active });
        break;
      case 'nudge':
        this._emit('nudge', { from: msg.from });
        break;
      case 'error': {
        const err = new DuetError(msg.code, msg.message);
        if (['replaced', 'closing', 'too_large', 'unauthenticated'].includes(msg.code)) this._fatal = err;
        this._emit('error', err);
        break;
      }
      default:
        // Invitations, signals, pongs: not handled by this client.
        break;
    }
  }

  _onClose(event) {
    if (this._closed) return;
    this._closed = true;
    clearInterval(this._ping);
    for (const p of this._pending.values()) {
      clearTimeout(p.timer);
      p.reject(new DuetError('closed', 'the connection to the server closed'));
    }
    this._pending.clear();
    this._emit('closed', { code: event.code, reason: event.reason, error: this._fatal });
  }
}

/**
 * Connects to a duet server and logs in. `server` defaults to the page's own server; `status` and
 * `note` are optional. Rejects with a `DuetError` (code `bad_credentials` for an unknown user or a
 * wrong token, `unreachable` when there is no server).
 */
export function connect({ server, user, token, status, note } = {}) {
  return new Promise((resolve, reject) => {
    if (!user || !token) {
      reject(new DuetError('invalid', 'a user name and a token are needed'));
      return;
    }
    let ws;
    try {
      ws = new WebSocket(socketUrl(server));
    } catch (e) {
      reject(e instanceof DuetError ? e : new DuetError('unreachable', String(e.message ?? e)));
      return;
    }
    const client = new DuetClient(ws, user);
    let done = false;
    const fail = (err) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      try { ws.close(); } catch (_) { /* already closed */ }
      reject(err);
    };
    const timer = setTimeout(
      () => fail(new DuetError('timeout', 'the server did not answer the login')),
      LOGIN_TIMEOUT_MS,
    );
    ws.onopen = () => {
      const hello = { type: 'hello', version: PROTOCOL_VERSION, user, token };
      if (status !== undefined) hello.status = status;
      if (note !== undefined) hello.note = note;
      ws.send(JSON.stringify(hello));
    };
    ws.onmessage = (event) => {
      let msg;
      try {
        msg = JSON.parse(event.data);
      } catch (_) {
        console.error('duet: the server sent something that is not JSON');
        return;
      }
      if (done) {
        client._handle(msg);
        return;
      }
      if (msg.type === 'welcome') {
        done = true;
        clearTimeout(timer);
        client.user = msg.user;
        client.status = msg.status;
        client.note = msg.note ?? '';
        client._ping = setInterval(() => {
          if (!client._closed) client._send({ type: 'ping' });
        }, PING_EVERY_MS);
        resolve(client);
      } else if (msg.type === 'error') {
        const text = msg.code === 'bad_credentials'
          ? `unknown user or wrong token for ${user}`
          : msg.message;
        fail(new DuetError(msg.code, text));
      }
    };
    ws.onerror = () => fail(new DuetError('unreachable', `cannot reach the duet server at ${ws.url}`));
    ws.onclose = (event) => {
      fail(new DuetError('unreachable', `the duet server closed the connection (${event.code})`));
      client._onClose(event);
    };
  });
}

/** duet's browser API. */
export const Duet = { connect, DuetError, DuetClient };
export default Duet;
