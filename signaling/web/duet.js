// duet.js: duet for the browser (contacts, presence, chat with receipts, calls), speaking the
// protocol of signaling/PROTOCOL.md over a WebSocket to `duet serve`, with calls carried by the
// browser's RTCPeerConnection and set up through the same JSON signals as duet-media's `Signal`.
//
//   import { Duet } from '/duet.js';
//   const client = await Duet.connect({ user: 'alice', token });
//   client.on('chat', (m) => console.log(m.from, m.text));
//   await client.chat('bob', 'lunch?');
//   const stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
//   const call = await client.call('bob', { stream });
//   video.srcObject = call.remoteStream;
//
// Plain modern JavaScript, no build step.

const PROTOCOL_VERSION = 1;
const PING_EVERY_MS = 30000;
const LOGIN_TIMEOUT_MS = 10000;
const REQUEST_TIMEOUT_MS = 10000;
const STATUSES = ['online', 'away', 'busy', 'invisible'];
/** How long a placed call rings by default. */
const RING_MS = 30000;
/** How long an answered call may take to connect. */
const CONNECT_TIMEOUT_MS = 20000;
/** Signals and states kept for an invitation no call has claimed yet, and how many invitations. */
const PARKED_PER_ID = 64;
const PARKED_IDS = 64;
/** The invitation states after which nothing more happens. */
const FINAL_STATES = ['declined', 'busy', 'cancelled', 'expired', 'hung_up'];

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

/** What has events: `on(name, handler)`. */
class Emitter {
  constructor() {
    this._handlers = new Map();
  }

  /** Calls `handler(event)` for every event named `name`; returns a function that stops it. */
  on(name, handler) {
    if (!this._handlers.has(name)) this._handlers.set(name, new Set());
    this._handlers.get(name).add(handler);
    return () => this._handlers.get(name).delete(handler);
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
}

function randomId() {
  const bytes = new Uint8Array(8);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

/** Runs `f`, ignoring a connection that has closed meanwhile. */
function quietly(f) {
  try {
    f();
  } catch (_) {
    /* the connection closed: nothing to tell */
  }
}

/**
 * A call with a contact, carried by the browser's RTCPeerConnection. Made by `client.call` (which
 * resolves with it once it is connected) or `incomingCall.accept`.
 *
 * - `peer` is the contact, `id` the invitation, `video` whether the call carries video;
 * - `remoteStream` is a MediaStream that gets the contact's audio and video tracks as they come;
 * - `localStream` is the stream this side sends (or null: this side only receives);
 * - `state` is `connecting`, `connected` or `ended`; `endReason` says why it ended;
 * - events: `connected`; `track` (a remote MediaStreamTrack); `ended` `{ reason, remote }`, once,
 *   where `remote` is true when the contact (or the server) ended it.
 *
 * Its signals are duet-media's `Signal`s as JSON: `{"type": "offer" | "answer", "sdp"}`,
 * `{"type": "candidate", "candidate", "sdp_mid", "sdp_mline_index"}` and `{"type": "end", "reason"}`;
 * other types are ignored.
 */
export class DuetCall extends Emitter {
  constructor(client, id, peer, video, stream, caller) {
    super();
    this.id = id;
    this.peer = peer;
    this.video = video;
    this.caller = caller;
    this.localStream = stream || null;
    this.remoteStream = new MediaStream();
    this.state = 'connecting';
    this.endReason = null;
    this._client = client;
    this._pc = null;
    this._timer = null;
    this._queue = Promise.resolve();
    this._remoteSet = false;
    this._early = [];
    this._described = false;
    this._held = [];
    this._answered = false;
    this.connected = new Promise((resolve, reject) => {
      this._resolve = resolve;
      this._reject = reject;
    });
    // A caller that never awaits `connected` must not see an unhandled rejection.
    this.connected.catch(() => {});
  }

  /** The RTCPeerConnection underneath (null until the call is answered). */
  get peerConnection() {
    return this._pc;
  }

  /** The browser's statistics of the call (`RTCPeerConnection.getStats`), as plain objects. */
  async stats() {
    if (!this._pc) return [];
    const report = await this._pc.getStats();
    return [...report.values()].map((s) => ({ ...s }));
  }

  /** Hangs up (or cancels the call while it rings); `ended` follows. */
  hangUp(reason = 'hang-up') {
    if (this.state === 'ended') return;
    if (this._answered) {
      this._signal({ type: 'end', reason });
      quietly(() => this._client._send({ type: 'hangup', id: this.id, reason }));
    } else if (this.caller) {
      quietly(() => this._client._send({ type: 'cancel', id: this.id }));
    }
    this._end(reason, false, 'hung_up');
  }

  /** The invitation was answered: set up the connection (the caller also makes the offer). */
  _answer() {
    if (this._answered || this.state === 'ended') return;
    this._answered = true;
    const pc = new RTCPeerConnection({
      iceServers: this._client.iceServers,
      bundlePolicy: 'max-bundle',
      rtcpMuxPolicy: 'require',
    });
    this._pc = pc;
    pc.onicecandidate = (e) => {
      if (!e.candidate || !e.candidate.candidate) return;
      const signal = { type: 'candidate', candidate: e.candidate.candidate };
      if (e.candidate.sdpMid != null) signal.sdp_mid = e.candidate.sdpMid;
      if (e.candidate.sdpMLineIndex != null) signal.sdp_mline_index = e.candidate.sdpMLineIndex;
      if (this._described) this._signal(signal);
      else this._held.push(signal);
    };
    pc.ontrack = (e) => {
      this.remoteStream.addTrack(e.track);
      this._emit('track', e.track);
    };
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === 'connected' && this.state === 'connecting') {
        this.state = 'connected';
        clearTimeout(this._timer);
        this._emit('connected', {});
        this._resolve(this);
      } else if (pc.connectionState === 'failed') {
        this._giveUp('the connection failed', 'connection_failed');
      }
    };
    this._timer = setTimeout(
      () => this._giveUp(`not connected after ${CONNECT_TIMEOUT_MS / 1000} s`, 'no_path'),
      CONNECT_TIMEOUT_MS,
    );
    if (this.caller) this._serial(() => this._offer());
  }

  /** Our tracks, and a receive-only transceiver for each medium we do not send. */
  _addMedia() {
    const kinds = this.video ? ['audio', 'video'] : ['audio'];
    for (const kind of kinds) {
      const track = this.localStream
        ? this.localStream.getTracks().find((t) => t.kind === kind && t.readyState === 'live')
        : undefined;
      if (track) this._pc.addTrack(track, this.localStream);
      else if (this.caller) this._pc.addTransceiver(kind, { direction: 'recvonly' });
    }
  }

  async _offer() {
    this._addMedia();
    await this._pc.setLocalDescription(await this._pc.createOffer());
    this._describe({ type: 'offer', sdp: this._pc.localDescription.sdp });
  }

  /** Sends our description, then the candidates found meanwhile. */
  _describe(signal) {
    this._signal(signal);
    this._described = true;
    for (const held of this._held.splice(0)) this._signal(held);
  }

  _signal(signal) {
    if (this.state === 'ended') return;
    quietly(() => this._client._send({ type: 'signal', call: this.id, signal }));
  }

  /** Runs the steps of the negotiation one after the other. */
  _serial(step) {
    this._queue = this._queue.then(step).catch((e) => {
      console.error('duet: call negotiation failed', e);
      this._giveUp(`negotiation failed: ${e.message || e}`, 'negotiation_failed');
    });
  }

  /** A signal from the peer. */
  _onSignal(signal) {
    if (!signal || typeof signal !== 'object') return;
    switch (signal.type) {
      case 'end':
        this._end(String(signal.reason || 'hang-up'), true, 'hung_up');
        break;
      case 'offer':
        if (this.caller) return;
        this._serial(async () => {
          await this._pc.setRemoteDescription({ type: 'offer', sdp: String(signal.sdp) });
          await this._remoteDescribed();
          this._addMedia();
          await this._pc.setLocalDescription(await this._pc.createAnswer());
          this._describe({ type: 'answer', sdp: this._pc.localDescription.sdp });
        });
        break;
      case 'answer':
        if (!this.caller) return;
        this._serial(async () => {
          await this._pc.setRemoteDescription({ type: 'answer', sdp: String(signal.sdp) });
          await this._remoteDescribed();
        });
        break;
      case 'candidate': {
        const init = {
          candidate: String(signal.candidate || ''),
          sdpMid: signal.sdp_mid ?? null,
          sdpMLineIndex: signal.sdp_mline_index ?? (signal.sdp_mid == null ? 0 : null),
        };
        this._serial(async () => {
          if (this._remoteSet) await this._addCandidate(init);
          else if (this._early.length < PARKED_PER_ID) this._early.push(init);
        });
        break;
      }
      default:
        // A signal this version does not know: ignored.
        break;
    }
  }

  async _remoteDescribed() {
    this._remoteSet = true;
    for (const init of this._early.splice(0)) await this._addCandidate(init);
  }

  async _addCandidate(init) {
    if (this.state === 'ended') return;
    try {
      await this._pc.addIceCandidate(init);
    } catch (e) {
      console.warn(`duet: the peer's ICE candidate ${init.candidate} is not usable: ${e.message}`);
    }
  }

  /** A state of the invitation, from the server. */
  _onState(state, reason) {
    if (state === 'accepted') {
      this._answer();
    } else if (state === 'ringing') {
      this._client._emit('ringing', { id: this.id, to: this.peer });
    } else if (FINAL_STATES.includes(state)) {
      const text = {
        declined: `${this.peer} declined the call`,
        busy: `${this.peer} is in another call`,
        expired: `${this.peer} did not answer`,
        cancelled: 'the call was cancelled',
        hung_up: `${this.peer} hung up`,
      }[state];
      const code = state === 'expired' ? 'no_answer' : state;
      this._end(reason ? `${text} (${reason})` : text, true, code);
    }
  }

  /** Ends the call because this side cannot go on; tells the peer. */
  _giveUp(reason, code) {
    if (this.state === 'ended') return;
    if (this.state === 'connecting') {
      this._signal({ type: 'end', reason });
      quietly(() => this._client._send({ type: 'hangup', id: this.id, reason }));
    }
    this._end(reason, false, code);
  }

  _end(reason, remote, code) {
    if (this.state === 'ended') return;
    const connected = this.state === 'connected';
    this.state = 'ended';
    this.endReason = reason;
    clearTimeout(this._timer);
    if (this._pc) this._pc.close();
    this._client._release(this.id, this);
    if (!connected) this._reject(new DuetError(code, reason));
    this._emit('ended', { reason, remote });
  }
}

/**
 * A call ringing here: `client.on('incomingCall', (incoming) => ...)`. `from` is the caller, `id`
 * the invitation, `video` whether it asks for video. Answer with `accept({ stream })` (resolves
 * with the connected `DuetCall`), `decline(reason)` or `busy()`. Its `ended` event
 * `{ reason }` says the caller gave up or the invitation expired before an answer.
 */
export class IncomingCall extends Emitter {
  constructor(client, msg) {
    super();
    this.from = msg.from;
    this.id = msg.id;
    this.video = msg.invitation.media === 'video';
    this.expiresMs = msg.expires_ms ?? null;
    this.answered = false;
    /** The call, once accepted. */
    this.call = null;
    this._client = client;
  }

  /** Accepts, sending `stream` (or nothing); resolves with the call once it is connected. */
  async accept({ stream = null } = {}) {
    this._answering();
    const call = new DuetCall(this._client, this.id, this.from, this.video, stream, false);
    this.call = call;
    this._client._claim(this.id, call);
    try {
      await this._client._request({ type: 'accept', id: this.id });
    } catch (e) {
      call._end(e.message, false, e.code || 'not_allowed');
      throw e;
    }
    call._answer();
    return call.connected;
  }

  /** Declines, with an optional reason the caller sees. */
  async decline(reason = undefined) {
    this._answering();
    this._client._release(this.id, this);
    const msg = { type: 'decline', id: this.id };
    if (reason !== undefined) msg.reason = String(reason);
    await this._client._request(msg);
  }

  /** Answers that this side is busy. */
  async busy() {
    this._answering();
    this._client._release(this.id, this);
    await this._client._request({ type: 'busy', id: this.id });
  }

  _answering() {
    if (this.answered) throw new DuetError('not_allowed', 'this call was already answered');
    this.answered = true;
  }

  _onSignal() {}

  _onState(state, reason) {
    if (FINAL_STATES.includes(state)) {
      this._client._release(this.id, this);
      this._emit('ended', { reason: reason || `the call was ${state.replace('_', ' ')}` });
    }
  }
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
 * - `incomingCall`: an `IncomingCall` to accept or decline; `ringing`: `{ id, to }`, a call
 *   placed from here rings at the contact;
 * - `error`: a `DuetError` the server sent that answers no request;
 * - `closed`: `{ code, reason, error }` once the connection is over (`error` is the `DuetError`
 *   that ended it, such as `replaced`, or null).
 */
export class DuetClient extends Emitter {
  constructor(ws, user) {
    super();
    this.user = user;
    this.status = 'online';
    this.note = '';
    /** The contact list: name -> `{ user, link, blocked, status, note }`. */
    this.contacts = new Map();
    this._ws = ws;
    this._nextRid = 1;
    this._pending = new Map();
    this._seen = new Set();
    this._confirm = 0;
    this._confirmQueued = false;
    this._fatal = null;
    this._closed = false;
    this._ping = null;
    /** The STUN and TURN servers the server names, as RTCIceServer objects. */
    this.iceServers = [];
    this._calls = new Map();
    this._parked = new Map();
  }

  /**
   * Calls contact `name`, sending `stream` (a MediaStream, or null to only receive). The call
   * carries video when `video` is true (by default: when `stream` has a video track). Resolves
   * with the `DuetCall` once it is connected; rejects with a `DuetError` whose code says why not:
   * `offline`, `not_contact`, `declined`, `busy`, `no_answer`, `cancelled` (by `signal`, an
   * AbortSignal), `no_path`, ...
   */
  async call(name, { stream = null, video = undefined, ringMs = RING_MS, signal = undefined } = {}) {
    const withVideo = video ?? (stream ? stream.getVideoTracks().length > 0 : true);
    const contact = this.contacts.get(name);
    if (contact && contact.link === 'accepted' && !contact.blocked && contact.status === 'offline') {
      throw new DuetError('offline', `${name} is offline`);
    }
    if (signal && signal.aborted) throw new DuetError('cancelled', 'the call was cancelled');
    const reply = await this._request({
      type: 'invite',
      to: name,
      invitation: { kind: 'call', media: withVideo ? 'video' : 'audio' },
      expires_ms: ringMs,
    });
    const call = new DuetCall(this, reply.id, name, withVideo, stream, true);
    this._claim(reply.id, call);
    // The server expires the invitation after `ringMs`; this covers a server that does not.
    const noAnswer = setTimeout(() => {
      if (!call._answered) {
        quietly(() => this._send({ type: 'cancel', id: call.id }));
        call._end(`${name} did not answer`, false, 'no_answer');
      }
    }, ringMs + 3000);
    call.on('connected', () => clearTimeout(noAnswer));
    call.on('ended', () => clearTimeout(noAnswer));
    if (signal) signal.addEventListener('abort', () => call.hangUp('cancelled'), { once: true });
    return call.connected;
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

  /** Routes the invitation `id`'s states and signals to `owner`, first those that came early. */
  _claim(id, owner) {
    this._calls.set(id, owner);
    const parked = this._parked.get(id) || [];
    this._parked.delete(id);
    for (const item of parked) this._deliver(owner, item);
  }

  /** `owner` is done with invitation `id`. */
  _release(id, owner) {
    if (this._calls.get(id) === owner) this._calls.delete(id);
  }

  _route(id, item) {
    const owner = this._calls.get(id);
    if (owner) {
      this._deliver(owner, item);
      return;
    }
    // The reply to our own invite can come after its first state: keep a few for a while.
    if (!this._parked.has(id)) {
      if (this._parked.size >= PARKED_IDS) this._parked.delete(this._parked.keys().next().value);
      this._parked.set(id, []);
    }
    const kept = this._parked.get(id);
    if (kept.length < PARKED_PER_ID) kept.push(item);
  }

  _deliver(owner, item) {
    if (item.signal !== undefined) owner._onSignal(item.signal);
    else owner._onState(item.state, item.reason);
  }

  /** Closes the connection; `closed` follows. */
  close() {
    this._ws.close(1000, 'bye');
  }

  async _contactChange(type, name) {
    await this._request({ type, user: name });
    await this.refreshContacts();
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
      case 'invitation':
        if (msg.invitation && msg.invitation.kind === 'call') {
          const incoming = new IncomingCall(this, msg);
          this._claim(msg.id, incoming);
          quietly(() => this._send({ type: 'ringing', id: msg.id }));
          this._emit('incomingCall', incoming);
        }
        break;
      case 'invite_state':
        this._route(msg.id, { state: msg.state, reason: msg.reason ?? null });
        break;
      case 'signal':
        this._route(msg.call, { signal: msg.signal });
        break;
      case 'ice_servers':
        if (Array.isArray(msg.servers)) this.iceServers = msg.servers;
        break;
      case 'error': {
        const err = new DuetError(msg.code, msg.message);
        if (['replaced', 'closing', 'too_large', 'unauthenticated'].includes(msg.code)) this._fatal = err;
        this._emit('error', err);
        break;
      }
      default:
        // File and folder invitations, pongs: not handled by this client.
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


/**
 * A call without duet's server: the application carries the signals itself, over whatever
 * channel it has (its own messenger's), to a native duet `CallSession` or another
 * `callSession`. The signals are duet-media's `Signal`s as JSON objects (see `DuetCall`).
 *
 *   const session = Duet.callSession({ stream, onSignal: (s) => myChannel.send(JSON.stringify(s)) });
 *   myChannel.onmessage = (text) => session.handleSignal(JSON.parse(text));
 *   session.start();            // on the side that offers, as CallSession::start; the other answers
 *   await session.connected;    // then session.remoteStream, session.stats(), session.hangUp()
 *
 * `onSignal(signal)` gets every signal to carry, in order; `handleSignal(signal)` takes the
 * peer's (an object or its JSON text). `stream` is what this side sends (null: only receive),
 * `video` whether the call carries video (by default: when `stream` has a video track),
 * `iceServers` RTCIceServer objects (none by default: host candidates only). The session is a
 * `DuetCall` (`state`, `remoteStream`, `stats()`, `hangUp()`, events `connected`, `track`,
 * `ended`) whose `id` and `peer` are null; it gives up when not connected 20 s after it was
 * made.
 */
export function callSession({ onSignal, stream = null, video = undefined, iceServers = [] } = {}) {
  if (typeof onSignal !== 'function') throw new DuetError('invalid', 'callSession needs onSignal(signal)');
  const carrier = {
    iceServers,
    _send(msg) {
      if (msg.type === 'signal') onSignal(msg.signal);
    },
    _release() {},
    _emit() {},
  };
  const withVideo = video ?? (stream ? stream.getVideoTracks().length > 0 : true);
  const session = new DuetCall(carrier, null, null, withVideo, stream, false);
  /** Takes one of the peer's signals (an object, or its JSON text); a bad one is ignored. */
  session.handleSignal = (signal) => {
    let parsed = signal;
    if (typeof signal === 'string') {
      try {
        parsed = JSON.parse(signal);
      } catch (_) {
        console.warn('duet: a signal that is not JSON was ignored');
        return;
      }
    }
    session._onSignal(parsed);
  };
  /** Makes the offer: call it on one side only. */
  session.start = () => {
    if (session.caller || session.state !== 'connecting') return;
    session.caller = true;
    session._serial(() => session._offer());
  };
  session._answer();
  return session;
}

// ---- Stamps: duet's frame stamp code (media/src/video/stamp.rs), drawn and read in a browser ----
//
// A band at the top of the picture carries 80 bits in square cells (8 px below 640 px of
// width, 16 px from there on), row by row from the top left: the frame's sequence number
// (32 bits), its capture time in µs since 1970 modulo 2^32 (32 bits) and a CRC-16/CCITT-FALSE
// of both (16 bits). A 0 is luma 16 (black), a 1 luma 240 (white); the rest of the band is
// mid-grey. duet stamps and reads the same code with the same wall clock, so a browser and a
// duet process on one machine (or on machines whose clocks agree) measure glass-to-glass
// latency from the pixels, each way.

const STAMP_BITS = 80;
const STAMP_GREY = 128;
const STAMP_MARGIN = 40;
const STAMP_WRAP = 4294967296;

/** Microseconds since 1970 modulo 2^32: the stamp clock. */
function stampClockUs() {
  return wallClockUs(performance.now());
}

/** The stamp clock (wall-clock microseconds, wrapped) at a `performance.now()`-based time. */
function wallClockUs(performanceMs) {
  return Math.floor((performance.timeOrigin + performanceMs) * 1000) % STAMP_WRAP;
}

function stampCell(width) {
  return width >= 640 ? 16 : 8;
}

/** Rows the stamp band takes in a `width` x `height` picture (0: too small for a stamp). */
export function stampBandHeight(width, height) {
  const cell = stampCell(width);
  const perRow = Math.floor(width / cell);
  if (perRow === 0) return 0;
  const band = Math.ceil((Math.ceil(STAMP_BITS / perRow) * cell) / 16) * 16;
  return band > height ? 0 : band;
}

function crc16(bytes) {
  let crc = 0xffff;
  for (const b of bytes) {
    crc ^= b << 8;
    for (let i = 0; i < 8; i++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc;
}

/** The 80 bits of a stamp, most significant first, as an array of 0 and 1. */
function stampBits(seq, timeUs) {
  const bytes = [];
  for (const v of [seq, timeUs]) bytes.push((v >>> 24) & 255, (v >>> 16) & 255, (v >>> 8) & 255, v & 255);
  const crc = crc16(bytes);
  const bits = [];
  for (const b of [...bytes, crc >> 8, crc & 255]) for (let i = 7; i >= 0; i--) bits.push((b >> i) & 1);
  return bits;
}

/**
 * A MediaStream of one video track: a moving picture drawn on a canvas at `fps`, each frame
 * carrying duet's stamp with its sequence number and wall-clock capture time, so that duet
 * (or `readStamps`) measures latency from its pixels. `stream.stop()` (or stopping its track)
 * ends it.
 */
export function stampedPattern({ width = 320, height = 240, fps = 30 } = {}) {
  const canvas = document.createElement('canvas');
  canvas.width = width;
  canvas.height = height;
  const ctx = canvas.getContext('2d');
  const stream = canvas.captureStream(fps);
  const band = stampBandHeight(width, height);
  const cell = stampCell(width);
  const perRow = Math.floor(width / cell);
  let seq = 0;
  const [track] = stream.getVideoTracks();
  let timer = null;
  const draw = () => {
    // Stopped by whoever holds the track: the drawing stops too.
    if (track.readyState === 'ended') {
      clearInterval(timer);
      return;
    }
    const t = performance.now() / 1000;
    const hue = Math.floor(t * 40) % 360;
    ctx.fillStyle = `hsl(${hue}, 60%, 45%)`;
    ctx.fillRect(0, band, width, height - band);
    ctx.fillStyle = '#fff';
    const x = ((t * 80) % (width + 40)) - 40;
    ctx.fillRect(x, band + (height - band) / 2 - 20, 40, 40);
    if (band > 0) {
      ctx.fillStyle = `rgb(${STAMP_GREY}, ${STAMP_GREY}, ${STAMP_GREY})`;
      ctx.fillRect(0, 0, width, band);
      const bits = stampBits(seq >>> 0, stampClockUs());
      bits.forEach((bit, i) => {
        ctx.fillStyle = bit ? '#fff' : '#000';
        ctx.fillRect((i % perRow) * cell, Math.floor(i / perRow) * cell, cell, cell);
      });
    }
    seq += 1;
  };
  draw();
  timer = setInterval(draw, 1000 / fps);
  stream.stop = () => {
    clearInterval(timer);
    for (const track of stream.getTracks()) track.stop();
  };
  return stream;
}

/** Reads the stamp of the picture in `ctx` (its top `band` rows), or null. */
function readStampFrom(ctx, width, band) {
  const cell = stampCell(width);
  const perRow = Math.floor(width / cell);
  const pixels = ctx.getImageData(0, 0, width, band).data;
  const side = Math.max(1, Math.floor(cell / 4));
  const offset = Math.floor((cell - side) / 2);
  const bits = [];
  for (let i = 0; i < STAMP_BITS; i++) {
    const left = (i % perRow) * cell + offset;
    const top = Math.floor(i / perRow) * cell + offset;
    let sum = 0;
    for (let y = top; y < top + side; y++) {
      for (let x = left; x < left + side; x++) {
        const p = (y * width + x) * 4;
        // Back from RGB to studio-range luma, as duet reads the decoded picture.
        sum += 16 + ((0.299 * pixels[p] + 0.587 * pixels[p + 1] + 0.114 * pixels[p + 2]) * 219) / 255;
      }
    }
    const mean = sum / (side * side);
    if (mean + STAMP_MARGIN <= STAMP_GREY) bits.push(0);
    else if (mean >= STAMP_GREY + STAMP_MARGIN) bits.push(1);
    else return null;
  }
  const word = (from) => bits.slice(from, from + 32).reduce((v, b) => v * 2 + b, 0);
  const seq = word(0);
  const timeUs = word(32);
  const expected = stampBits(seq, timeUs);
  return expected.every((b, i) => b === bits[i]) ? { seq, timeUs } : null;
}

/**
 * Reads duet's stamps from the pictures a playing `video` element shows, each time it shows a
 * new one. Returns a reader: `latencies` (ms from capture to display, one per new stamped
 * picture, by the shared wall clock), `received` (ms from capture to the arrival of the
 * picture's last packet, where the browser reports it), `count`, `errors` (pictures without a
 * readable stamp), `last` (the last stamp `{ seq, timeUs }`), `p50()`, `receivedP50()` and
 * `stop()`.
 *
 * "Display" is the moment the browser handed the picture to its compositor
 * (`requestVideoFrameCallback`'s `presentationTime`), as duet's own figure is the moment a
 * picture is handed to its sink; where that is not reported, the moment the callback ran.
 */
export function readStamps(video) {
  const canvas = document.createElement('canvas');
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  const median = (values) => {
    if (values.length === 0) return null;
    const sorted = [...values].sort((a, b) => a - b);
    return sorted[Math.floor(sorted.length / 2)];
  };
  const reader = {
    latencies: [], received: [], count: 0, errors: 0, last: null, stopped: false,
    stop() { this.stopped = true; },
    p50() { return median(this.latencies); },
    receivedP50() { return median(this.received); },
  };
  const ageMs = (atUs, stamp) => {
    let age = (atUs - stamp.timeUs + STAMP_WRAP) % STAMP_WRAP;
    if (age >= STAMP_WRAP / 2) age = 0;
    return age / 1000;
  };
  const read = (metadata) => {
    const width = video.videoWidth;
    const band = stampBandHeight(width, video.videoHeight);
    if (band === 0) return;
    const shownUs = metadata && metadata.presentationTime
      ? wallClockUs(metadata.presentationTime)
      : stampClockUs();
    if (canvas.width !== width || canvas.height !== band) {
      canvas.width = width;
      canvas.height = band;
    }
    ctx.drawImage(video, 0, 0, width, band, 0, 0, width, band);
    const stamp = readStampFrom(ctx, width, band);
    if (!stamp) {
      reader.errors += 1;
      return;
    }
    if (reader.last && stamp.seq <= reader.last.seq) return;
    reader.last = stamp;
    reader.count += 1;
    reader.latencies.push(ageMs(shownUs, stamp));
    if (metadata && metadata.receiveTime) {
      reader.received.push(ageMs(wallClockUs(metadata.receiveTime), stamp));
    }
  };
  const onFrame = (_now, metadata) => {
    if (reader.stopped) return;
    read(metadata);
    video.requestVideoFrameCallback(onFrame);
  };
  if (video.requestVideoFrameCallback) {
    video.requestVideoFrameCallback(onFrame);
  } else {
    const timer = setInterval(() => (reader.stopped ? clearInterval(timer) : read(null)), 5);
  }
  return reader;
}

/** duet's browser API. */
export const Duet = {
  connect, DuetError, DuetClient, DuetCall, IncomingCall, callSession, stampedPattern, readStamps,
  stampBandHeight,
};
export default Duet;
