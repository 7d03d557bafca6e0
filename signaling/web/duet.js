// duet.js: duet for the browser (contacts, presence, chat with receipts, calls, files), speaking the
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
//   client.on('fileOffer', async (offer) => (await (await offer.accept()).done).blob);
//   await client.sendFile('bob', fileInput.files[0]).done;
//
// Files move with duet-share's block protocol (share/PROTOCOL.md) over a data channel.
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
 * - `fileOffer`: an `IncomingFile` (name, size, from) to accept or decline;
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
    /** Interrupted receptions by SHA-256, kept for resuming. */
    this._partials = new Map();
  }

  /**
   * Offers `file` (a File or Blob) to contact `name` and sends it once accepted, over a data
   * channel with duet's block protocol. Returns the `FileTransfer` at once (it first reads the
   * file to hash it: state `hashing`); `await transfer.done` for the end. The file is offered
   * under `fileName`, by default its own name (a Blob without one: `file`).
   */
  sendFile(name, file, { fileName = undefined } = {}) {
    if (!(file instanceof Blob)) throw new DuetError('invalid', 'sendFile needs a File or a Blob');
    const title = fileName ?? (typeof file.name === 'string' && file.name ? file.name : 'file');
    const unsafe = unsafeFileName(title);
    if (unsafe) throw new DuetError('invalid', `cannot offer a file named ${JSON.stringify(title)}: ${unsafe}`);
    const contact = this.contacts.get(name);
    if (contact && contact.link === 'accepted' && !contact.blocked && contact.status === 'offline') {
      throw new DuetError('offline', `${name} is offline`);
    }
    const transfer = new FileTransfer(this, {
      direction: 'send', peer: name, name: title, size: file.size, file,
    });
    transfer._send();
    return transfer;
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
        } else if (msg.invitation && msg.invitation.kind === 'file') {
          this._fileOffer(msg);
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
        // Folder invitations, pongs: not handled by this client.
        break;
    }
  }

  /** A file offer: shown when it is well-formed, declined with the reason otherwise. */
  _fileOffer(msg) {
    const { name, size, sha256 } = msg.invitation;
    const unsafe = unsafeFileName(name);
    let why = null;
    if (unsafe) why = `refused: unsafe file name (${unsafe})`;
    else if (!Number.isSafeInteger(size) || size < 0) why = `refused: bad size ${size}`;
    else if (typeof sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(sha256)) why = 'refused: bad SHA-256';
    if (why) {
      quietly(() => this._send({ type: 'decline', id: msg.id, reason: why }));
      return;
    }
    const offer = new IncomingFile(this, msg);
    this._claim(msg.id, offer);
    quietly(() => this._send({ type: 'ringing', id: msg.id }));
    this._emit('fileOffer', offer);
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

// ---- Files: duet-share's block protocol (share/PROTOCOL.md) over a data channel ----
//
// A file offer is an invitation `{"kind": "file", name, size, sha256}`; once it is accepted, the
// side that offered makes a WebRTC offer for one ordered, reliable data channel labelled "duet",
// whose signals travel as the invitation's `signal` messages, as a call's do. The receiver asks
// for the manifest (the file's size, block size, SHA-256 and one SHA-256 per block), requests
// blocks within a 4 MiB window, checks each block's SHA-256 as it arrives and the whole file's
// at the end; the sender answers each request with the block's bytes in chunks, in order.

/** The version of the block protocol. */
const FILE_PROTOCOL_VERSION = 1;
/** The largest encoded message, bytes. */
const FILE_MAX_MESSAGE = 16 * 1024;
const DATA_HEADER = 1 + 4 + 4;
const MANIFEST_HEADER = 1 + 8 + 4 + 32 + 4 + 2;
/** The most file bytes one `data` message carries. */
const MAX_CHUNK = FILE_MAX_MESSAGE - DATA_HEADER;
/** The most block hashes one `manifest` part carries. */
const HASHES_PER_PART = Math.floor((FILE_MAX_MESSAGE - MANIFEST_HEADER) / 32);
/** The longest reason a `cancel` carries, bytes. */
const MAX_REASON = 1024;
const DEFAULT_BLOCK_SIZE = 128 * 1024;
const MIN_BLOCK_SIZE = 4 * 1024;
const MAX_BLOCK_SIZE = 16 * 1024 * 1024;
const MAX_BLOCKS = 1 << 20;
/** The receiver's bound on bytes requested and not yet verified. */
const WINDOW_BYTES = 4 * 1024 * 1024;
/** Outstanding blocks are requested again after this long without progress. */
const FILE_REQUEST_TIMEOUT_MS = 10000;
/** A receiver gives up after this long without a message from the sender. */
const FILE_IDLE_TIMEOUT_MS = 60000;
/** A sender gives up after this long without a message from a receiver that has begun. */
const SENDER_IDLE_TIMEOUT_MS = 600000;
/** How many times one block may fail its SHA-256 check. */
const MAX_BLOCK_FAILURES = 3;
/** The most block requests a sender queues. */
const MAX_QUEUED = 4096;
/** Sending waits while the channel holds more than this, until it falls to LOW_WATER. */
const HIGH_WATER = 1024 * 1024;
const LOW_WATER = 256 * 1024;
/** How long a file offer waits for an answer. */
const OFFER_TTL_MS = 300000;
/** How long the data link may take to open once the offer is accepted. */
const LINK_OPEN_TIMEOUT_MS = 22000;
/** The largest file `incomingFile.accept` takes by default: it ends in memory, as a Blob. */
const MAX_RECEIVE_SIZE = 2 * 1024 * 1024 * 1024;
/** Interrupted receptions kept for resuming, per client. */
const PARTIALS_KEPT = 4;

const TAG_BEGIN = 1;
const TAG_MANIFEST = 2;
const TAG_REQUEST = 3;
const TAG_DATA = 4;
const TAG_DONE = 5;
const TAG_CANCEL = 6;

const SHA256_K = new Int32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);

/**
 * SHA-256 over data given in pieces (`crypto.subtle.digest` takes its whole input at once, which
 * a large file does not fit): `new Sha256().update(bytes).update(more).digest()`.
 */
export class Sha256 {
  constructor() {
    this._h = new Int32Array([
      0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
    ]);
    this._w = new Int32Array(64);
    this._tail = new Uint8Array(64);
    this._fill = 0;
    this._length = 0;
  }

  /** Adds `bytes` (a Uint8Array); returns this. */
  update(bytes) {
    const n = bytes.length;
    let i = 0;
    this._length += n;
    if (this._fill > 0) {
      i = Math.min(64 - this._fill, n);
      this._tail.set(bytes.subarray(0, i), this._fill);
      this._fill += i;
      if (this._fill < 64) return this;
      this._blocks(this._tail, 0, 64);
      this._fill = 0;
    }
    const whole = i + Math.floor((n - i) / 64) * 64;
    this._blocks(bytes, i, whole);
    if (whole < n) {
      this._tail.set(bytes.subarray(whole), 0);
      this._fill = n - whole;
    }
    return this;
  }

  /** The digest of everything added, 32 bytes (a Uint8Array); nothing may be added after. */
  digest() {
    const bits = this._length * 8;
    const pad = new Uint8Array((this._fill < 56 ? 64 : 128) - this._fill);
    pad[0] = 0x80;
    const v = new DataView(pad.buffer);
    v.setUint32(pad.length - 8, Math.floor(bits / 0x100000000));
    v.setUint32(pad.length - 4, bits >>> 0);
    this.update(pad);
    const out = new Uint8Array(32);
    const o = new DataView(out.buffer);
    for (let i = 0; i < 8; i++) o.setInt32(4 * i, this._h[i]);
    return out;
  }

  /** Compresses the 64-byte blocks of `p` from `start` to `end`. */
  _blocks(p, start, end) {
    const w = this._w;
    const k = SHA256_K;
    const h = this._h;
    let h0 = h[0], h1 = h[1], h2 = h[2], h3 = h[3], h4 = h[4], h5 = h[5], h6 = h[6], h7 = h[7];
    for (let o = start; o < end; o += 64) {
      for (let t = 0; t < 16; t++) {
        const j = o + 4 * t;
        w[t] = (p[j] << 24) | (p[j + 1] << 16) | (p[j + 2] << 8) | p[j + 3];
      }
      for (let t = 16; t < 64; t++) {
        const x = w[t - 15];
        const y = w[t - 2];
        const s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3);
        const s1 = ((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10);
        w[t] = (w[t - 16] + s0 + w[t - 7] + s1) | 0;
      }
      let a = h0, b = h1, c = h2, d = h3, e = h4, f = h5, g = h6, hh = h7;
      for (let t = 0; t < 64; t++) {
        const s1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
        const t1 = (hh + s1 + ((e & f) ^ (~e & g)) + k[t] + w[t]) | 0;
        const s0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
        const t2 = (s0 + ((a & b) ^ (a & c) ^ (b & c))) | 0;
        hh = g; g = f; f = e; e = (d + t1) | 0; d = c; c = b; b = a; a = (t1 + t2) | 0;
      }
      h0 = (h0 + a) | 0; h1 = (h1 + b) | 0; h2 = (h2 + c) | 0; h3 = (h3 + d) | 0;
      h4 = (h4 + e) | 0; h5 = (h5 + f) | 0; h6 = (h6 + g) | 0; h7 = (h7 + hh) | 0;
    }
    h[0] = h0; h[1] = h1; h[2] = h2; h[3] = h3; h[4] = h4; h[5] = h5; h[6] = h6; h[7] = h7;
  }
}

function toHex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

function fromHex(hex) {
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.substr(2 * i, 2), 16);
  return out;
}

function sameBytes(a, b) {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** The SHA-256 of a Blob (or File), read in slices of 1 MiB, as 64 hex digits. */
export async function sha256OfBlob(blob) {
  const hash = new Sha256();
  for (let at = 0; at < blob.size; at += 1 << 20) {
    hash.update(new Uint8Array(await blob.slice(at, at + (1 << 20)).arrayBuffer()));
  }
  return toHex(hash.digest());
}

/** The block size duet uses for a file of `size` bytes: 128 KiB, doubled while it would need more than 2^20 blocks. */
function blockSizeFor(size) {
  let block = DEFAULT_BLOCK_SIZE;
  while (block < MAX_BLOCK_SIZE && Math.ceil(size / block) > MAX_BLOCKS) block *= 2;
  return block;
}

/** Why `name` cannot be a file name duet accepts (one component, no control characters...), or null. */
function unsafeFileName(name) {
  if (typeof name !== 'string' || name === '') return 'an empty name';
  if (name === '.' || name === '..') return `"${name}"`;
  if (/[/\\:\0]/.test(name)) return 'a "/", "\\" or ":" in it';
  // Control characters, and bidirectional or zero-width ones that disguise a name.
  if (/[\u0000-\u001f\u007f-\u009f\u061c\u200b-\u200f\u202a-\u202e\u2060\u2066-\u2069\ufeff]/.test(name)) {
    return 'a control, bidirectional or zero-width character in it';
  }
  if (/[. ]$/.test(name)) return 'a dot or a space at the end';
  const stem = name.split('.')[0].replace(/ +$/, '').toUpperCase();
  if (/^(CON|PRN|AUX|NUL|COM[1-9]|LPT[1-9])$/.test(stem)) return `${stem}, a Windows device name`;
  if (new TextEncoder().encode(name).length > 255) return 'longer than 255 bytes';
  return null;
}

/** A protocol error: the message is dropped, the transfer goes on. */
function badMessage(what) {
  return new DuetError('protocol', what);
}

/**
 * Encodes one message of the block protocol. `msg.type` is `begin` `{ version }`, `manifest`
 * `{ fileSize, blockSize, sha256, first, hashes }` (hashes: 32 bytes each, one Uint8Array),
 * `request` `{ block }`, `data` `{ block, offset, bytes }`, `done` or `cancel` `{ reason }`.
 */
function encodeFileMessage(msg) {
  let out;
  let v;
  switch (msg.type) {
    case 'begin':
      return Uint8Array.of(TAG_BEGIN, msg.version);
    case 'manifest': {
      const n = Math.min(msg.hashes.length / 32, HASHES_PER_PART);
      out = new Uint8Array(MANIFEST_HEADER + 32 * n);
      v = new DataView(out.buffer);
      out[0] = TAG_MANIFEST;
      v.setBigUint64(1, BigInt(msg.fileSize));
      v.setUint32(9, msg.blockSize);
      out.set(msg.sha256, 13);
      v.setUint32(45, msg.first);
      v.setUint16(49, n);
      out.set(msg.hashes.subarray(0, 32 * n), MANIFEST_HEADER);
      return out;
    }
    case 'request':
      out = new Uint8Array(5);
      out[0] = TAG_REQUEST;
      new DataView(out.buffer).setUint32(1, msg.block);
      return out;
    case 'data': {
      const n = Math.min(msg.bytes.length, MAX_CHUNK);
      out = new Uint8Array(DATA_HEADER + n);
      v = new DataView(out.buffer);
      out[0] = TAG_DATA;
      v.setUint32(1, msg.block);
      v.setUint32(5, msg.offset);
      out.set(msg.bytes.subarray(0, n), DATA_HEADER);
      return out;
    }
    case 'done':
      return Uint8Array.of(TAG_DONE);
    case 'cancel': {
      let reason = new TextEncoder().encode(String(msg.reason));
      if (reason.length > MAX_REASON) {
        // Cut on a character boundary: never before a continuation byte.
        let end = MAX_REASON;
        while (end > 0 && (reason[end] & 0xc0) === 0x80) end--;
        reason = reason.subarray(0, end);
      }
      out = new Uint8Array(1 + reason.length);
      out[0] = TAG_CANCEL;
      out.set(reason, 1);
      return out;
    }
    default:
      throw new DuetError('invalid', `no message type ${msg.type}`);
  }
}

/** Decodes one message (an ArrayBuffer); throws a `DuetError` (code `protocol`) naming what is wrong. */
function decodeFileMessage(buffer) {
  if (!(buffer instanceof ArrayBuffer)) throw badMessage('a text message where binary was due');
  if (buffer.byteLength > FILE_MAX_MESSAGE) {
    throw badMessage(`message of ${buffer.byteLength} bytes is over ${FILE_MAX_MESSAGE}`);
  }
  const bytes = new Uint8Array(buffer);
  const v = new DataView(buffer);
  const need = (n) => {
    if (bytes.length < n) throw badMessage('message cut short');
  };
  const exactly = (n) => {
    need(n);
    if (bytes.length > n) throw badMessage(`${bytes.length - n} trailing bytes`);
  };
  need(1);
  switch (bytes[0]) {
    case TAG_BEGIN:
      exactly(2);
      return { type: 'begin', version: bytes[1] };
    case TAG_MANIFEST: {
      need(MANIFEST_HEADER);
      const n = v.getUint16(49);
      if (n > HASHES_PER_PART) throw badMessage(`manifest part with ${n} hashes`);
      exactly(MANIFEST_HEADER + 32 * n);
      const fileSize = v.getBigUint64(1);
      if (fileSize > BigInt(Number.MAX_SAFE_INTEGER)) throw badMessage(`a file of ${fileSize} bytes`);
      return {
        type: 'manifest',
        fileSize: Number(fileSize),
        blockSize: v.getUint32(9),
        sha256: bytes.slice(13, 45),
        first: v.getUint32(45),
        hashes: bytes.slice(MANIFEST_HEADER),
      };
    }
    case TAG_REQUEST:
      exactly(5);
      return { type: 'request', block: v.getUint32(1) };
    case TAG_DATA: {
      need(DATA_HEADER);
      const n = bytes.length - DATA_HEADER;
      if (n === 0 || n > MAX_CHUNK) throw badMessage(`data chunk of ${n} bytes`);
      return { type: 'data', block: v.getUint32(1), offset: v.getUint32(5), bytes: bytes.subarray(DATA_HEADER) };
    }
    case TAG_DONE:
      exactly(1);
      return { type: 'done' };
    case TAG_CANCEL: {
      if (bytes.length - 1 > MAX_REASON) throw badMessage(`cancel reason of ${bytes.length - 1} bytes`);
      let reason;
      try {
        reason = new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(1));
      } catch (_) {
        throw badMessage('cancel reason is not UTF-8');
      }
      return { type: 'cancel', reason };
    }
    default:
      throw badMessage(`unknown message tag ${bytes[0]}`);
  }
}

/** The manifest's id: SHA-256 of its size, block size, file hash and block hashes (what resume state is tied to). */
async function manifestId(m) {
  const buf = new Uint8Array(8 + 4 + 32 + m.hashes.length);
  const v = new DataView(buf.buffer);
  v.setBigUint64(0, BigInt(m.fileSize));
  v.setUint32(8, m.blockSize);
  buf.set(m.sha256, 12);
  buf.set(m.hashes, 44);
  return toHex(new Uint8Array(await crypto.subtle.digest('SHA-256', buf)));
}

const BLOCK_MISSING = 0;
const BLOCK_REQUESTED = 1;
const BLOCK_DONE = 2;

/**
 * One file moving between this browser and a contact: made by `client.sendFile` (`direction`
 * `send`) or `incomingFile.accept` (`direction` `receive`).
 *
 * - `peer` the contact, `id` the invitation, `name`, `size` (bytes), `sha256` (64 hex digits;
 *   null while a file to send is being hashed);
 * - `state`: `hashing` (reading the file to send), `offered` (waiting for the contact's
 *   answer), `connecting` (opening the data channel), `moving`, `done` or `failed`;
 * - `progress`: `{ bytes, total, moved, seconds }`: bytes of the file verified (receiving) or
 *   read and sent (sending; while `hashing`, bytes hashed), bytes moved in this session (fewer
 *   than the file when a transfer resumes), seconds since the data channel opened;
 * - `stats` (receiving, once the channel opened): `{ blocksVerified, hashFailures, rerequests,
 *   staleChunks, peakBuffered }`, as duet-share's receiver counts them;
 * - `done`: a Promise of the result `{ name, size, sha256, seconds, bytesMoved, blocksMoved,
 *   blocksResumed, blob }` (`blob` only when receiving: the file, its SHA-256 checked), or a
 *   `DuetError` whose code says why not: `declined`, `no_answer`, `offline`, `not_contact`,
 *   `cancelled`, `held` (the receiver's virus scanner held it), `integrity`, `protocol`,
 *   `no_path`, `too_large`, `closed`;
 * - events: `state` (the new state), `progress` (as `progress`), `ended` `{ reason, error }`;
 * - `cancel(reason)` stops it and tells the contact; `download()` saves a received file.
 */
export class FileTransfer extends Emitter {
  constructor(client, { direction, peer, name, size, sha256 = null, file = null }) {
    super();
    this.direction = direction;
    this.peer = peer;
    this.id = null;
    this.name = name;
    this.size = size;
    this.sha256 = sha256;
    this.state = direction === 'send' ? 'hashing' : 'connecting';
    this.progress = { bytes: 0, total: size, moved: 0, seconds: 0 };
    /** The received file, once it is whole and checked. */
    this.blob = null;
    this._client = client;
    this._file = file;
    this._pc = null;
    this._channel = null;
    this._described = false;
    this._held = [];
    this._early = [];
    this._remoteSet = false;
    this._negotiation = Promise.resolve();
    this._work = Promise.resolve();
    this._timer = null;
    this._ticker = null;
    this._started = 0;
    this._closed = false;
    this._peerEnded = false;
    this._afterDone = null;
    this._lastHeard = 0;
    this._manifest = null;
    this.done = new Promise((resolve, reject) => {
      this._resolve = resolve;
      this._reject = reject;
    });
    // A caller that only listens to events must not see an unhandled rejection.
    this.done.catch(() => {});
  }

  /** Stops the transfer and tells the contact why. */
  cancel(reason = 'cancelled') {
    if (this._closed) return;
    if (this.state === 'offered' && this.id !== null) {
      quietly(() => this._client._send({ type: 'cancel', id: this.id }));
    }
    this._say({ type: 'cancel', reason: String(reason) });
    this._fail(new DuetError('cancelled', `the transfer was cancelled: ${reason}`));
  }

  /** Saves the received file under its name, as the browser saves a download. */
  download() {
    if (!this.blob) throw new DuetError('not_allowed', 'nothing received to save yet');
    const url = URL.createObjectURL(this.blob);
    const a = document.createElement('a');
    a.href = url;
    a.download = this.name;
    a.rel = 'noopener';
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
  }

  _setState(state) {
    if (this.state === state) return;
    this.state = state;
    this._emit('state', state);
  }

  _seconds() {
    return this._started ? (performance.now() - this._started) / 1000 : 0;
  }

  _report(bytes, moved) {
    this.progress = { bytes, total: this.size, moved, seconds: this._seconds() };
    this._emit('progress', this.progress);
  }

  // ----- the sending side: hash, offer, answer requests -----

  /** Hashes the file into its manifest, offers it, and sends it once accepted. */
  async _send() {
    try {
      const file = this._file;
      const blockSize = blockSizeFor(file.size);
      const count = Math.ceil(file.size / blockSize);
      const hashes = new Uint8Array(32 * count);
      const whole = new Sha256();
      for (let b = 0; b < count; b++) {
        if (this._closed) return;
        const bytes = new Uint8Array(await file.slice(b * blockSize, (b + 1) * blockSize).arrayBuffer());
        whole.update(bytes);
        hashes.set(new Uint8Array(await crypto.subtle.digest('SHA-256', bytes)), 32 * b);
        this._report(Math.min(file.size, (b + 1) * blockSize), 0);
      }
      const sha256 = whole.digest();
      this._manifest = { fileSize: file.size, blockSize, sha256, hashes, count };
      this.sha256 = toHex(sha256);
      this._queue = [];
      this._pumping = false;
      this._served = 0;
      this._moved = 0;
      if (this._closed) return;
      this._setState('offered');
      const reply = await this._client._request({
        type: 'invite',
        to: this.peer,
        invitation: { kind: 'file', name: this.name, size: file.size, sha256: this.sha256 },
        expires_ms: OFFER_TTL_MS,
      });
      this.id = reply.id;
      if (this._closed) {
        quietly(() => this._client._send({ type: 'cancel', id: this.id }));
        return;
      }
      this._client._claim(this.id, this);
    } catch (e) {
      this._fail(e instanceof DuetError ? e : new DuetError('invalid', `cannot read the file: ${e.message || e}`));
    }
  }

  /** A message from the receiver. */
  async _senderMessage(msg) {
    switch (msg.type) {
      case 'begin':
        if (msg.version !== FILE_PROTOCOL_VERSION) {
          const why = `the receiver speaks version ${msg.version}, this side ${FILE_PROTOCOL_VERSION}`;
          this._say({ type: 'cancel', reason: why });
          this._fail(new DuetError('protocol', why));
          return;
        }
        await this._sendManifest();
        break;
      case 'request': {
        const m = this._manifest;
        if (msg.block >= m.count) throw badMessage(`request for block ${msg.block}`);
        if (this._queue.length >= MAX_QUEUED) throw badMessage('too many requests queued');
        this._queue.push(msg.block);
        this._pump();
        break;
      }
      case 'done':
        this._finish({
          name: this.name,
          size: this.size,
          sha256: this.sha256,
          seconds: this._seconds(),
          bytesMoved: this._moved,
          blocksMoved: this._served,
          blocksResumed: 0,
          blob: null,
        });
        break;
      case 'cancel': {
        const held = msg.reason.startsWith('held');
        this._fail(new DuetError(held ? 'held' : 'cancelled', `${this.peer}: ${msg.reason}`), true);
        break;
      }
      default:
        throw badMessage(`unexpected message to a sender: ${msg.type}`);
    }
  }

  async _sendManifest() {
    const m = this._manifest;
    let first = 0;
    do {
      const n = Math.min(HASHES_PER_PART, m.count - first);
      await this._room();
      this._say({
        type: 'manifest',
        fileSize: m.fileSize,
        blockSize: m.blockSize,
        sha256: m.sha256,
        first,
        hashes: m.hashes.subarray(32 * first, 32 * (first + n)),
      });
      first += n;
    } while (first < m.count);
  }

  /** Answers the queued requests in order, one whole block at a time, within the high-water mark. */
  async _pump() {
    if (this._pumping) return;
    this._pumping = true;
    try {
      const m = this._manifest;
      while (this._queue.length > 0 && !this._closed) {
        const block = this._queue.shift();
        const offset = block * m.blockSize;
        const len = Math.min(m.blockSize, m.fileSize - offset);
        const bytes = new Uint8Array(await this._file.slice(offset, offset + len).arrayBuffer());
        const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
        if (bytes.length !== len || !sameBytes(digest, m.hashes.subarray(32 * block, 32 * block + 32))) {
          const why = `block ${block} changed since the file was offered`;
          this._say({ type: 'cancel', reason: why });
          this._fail(new DuetError('integrity', why));
          return;
        }
        this._served += 1;
        this._moved += len;
        this._report(offset + len, this._moved);
        for (let at = 0; at < len && !this._closed; at += MAX_CHUNK) {
          await this._room();
          this._say({ type: 'data', block, offset: at, bytes: bytes.subarray(at, at + MAX_CHUNK) });
        }
      }
    } catch (e) {
      this._fail(new DuetError('closed', `sending failed: ${e.message || e}`));
    } finally {
      this._pumping = false;
    }
  }

  /** Resolves once the channel holds at most HIGH_WATER bytes (at once when it does). */
  _room() {
    const ch = this._channel;
    if (!ch || ch.bufferedAmount <= HIGH_WATER || ch.readyState !== 'open') return Promise.resolve();
    return new Promise((resolve) => {
      const wake = () => {
        ch.removeEventListener('bufferedamountlow', wake);
        ch.removeEventListener('close', wake);
        resolve();
      };
      ch.addEventListener('bufferedamountlow', wake);
      ch.addEventListener('close', wake);
    });
  }

  // ----- the receiving side: manifest, requests within the window, checks -----

  /** Starts receiving once the channel is open; `resume` is a kept partial of the same file. */
  _receiverStart() {
    this._phase = 'manifest';
    this._partial = null;
    this._blocks = null;
    this._data = null;
    this._cursor = 0;
    this._outstanding = [];
    this._failures = new Map();
    this._buffered = 0;
    this._moved = 0;
    this._verifiedEnd = 0;
    this.stats = { blocksVerified: 0, hashFailures: 0, rerequests: 0, staleChunks: 0, peakBuffered: 0 };
    this._lastProgress = performance.now();
    this._say({ type: 'begin', version: FILE_PROTOCOL_VERSION });
    this._ticker = setInterval(() => this._serialWork(() => this._receiverTick()), 1000);
  }

  async _receiverMessage(msg) {
    if (this._phase === 'closed') return;
    switch (msg.type) {
      case 'manifest':
        await this._onManifest(msg);
        break;
      case 'data':
        await this._onData(msg);
        break;
      case 'cancel':
        this._phase = 'closed';
        this._fail(new DuetError('cancelled', `${this.peer} cancelled: ${msg.reason}`), true);
        break;
      default:
        throw badMessage(`unexpected message to a receiver: ${msg.type}`);
    }
  }

  _failReceiving(err) {
    this._say({ type: 'cancel', reason: err.message });
    this._fail(err);
  }

  async _onManifest(msg) {
    if (this._phase !== 'manifest') return;
    if (msg.fileSize !== this.size || toHex(msg.sha256) !== this.sha256) {
      this._failReceiving(new DuetError('integrity', `the manifest (${msg.fileSize} bytes, SHA-256 `
        + `${toHex(msg.sha256)}) disagrees with the offer (${this.size} bytes, SHA-256 ${this.sha256})`));
      return;
    }
    if (this._partial) {
      if (this._partial.blockSize !== msg.blockSize) throw badMessage('manifest parts disagree');
    } else {
      const usable = msg.blockSize >= MIN_BLOCK_SIZE && msg.blockSize <= MAX_BLOCK_SIZE
        && msg.blockSize <= WINDOW_BYTES;
      const count = usable ? Math.ceil(msg.fileSize / msg.blockSize) : Infinity;
      if (count > MAX_BLOCKS) {
        this._failReceiving(badMessage(`unusable block size ${msg.blockSize} for ${msg.fileSize} bytes`));
        return;
      }
      this._partial = {
        blockSize: msg.blockSize, hashes: new Uint8Array(32 * count), have: new Uint8Array(count),
        missing: count, count,
      };
    }
    const p = this._partial;
    const n = msg.hashes.length / 32;
    if (msg.first + n > p.count) throw badMessage(`manifest part at ${msg.first} past the end`);
    p.hashes.set(msg.hashes, 32 * msg.first);
    for (let i = msg.first; i < msg.first + n; i++) {
      if (!p.have[i]) {
        p.have[i] = 1;
        p.missing -= 1;
      }
    }
    if (p.missing > 0) return;
    this._partial = null;
    const m = { fileSize: msg.fileSize, blockSize: p.blockSize, sha256: msg.sha256, hashes: p.hashes, count: p.count };
    this._manifest = m;
    this._blocks = new Uint8Array(m.count);
    this._data = new Array(m.count);
    const resume = this._resume;
    this._resume = null;
    if (resume) {
      if (resume.manifestId === (await manifestId(m)) && resume.count === m.count) {
        resume.blocks.forEach((blob, i) => {
          if (blob) {
            this._blocks[i] = BLOCK_DONE;
            this._data[i] = blob;
            this.stats.blocksVerified += 1;
          }
        });
      } else {
        console.debug('duet: the kept partial is for another manifest; starting over');
      }
    }
    this.blocksResumed = this.stats.blocksVerified;
    // The whole-file hash runs while the blocks arrive, in order, when none came from before
    // (those are Blobs: the hash then reads the finished file once at the end).
    this._whole = this.blocksResumed === 0 ? new Sha256() : null;
    this._hashCursor = 0;
    this._unhashed = new Map();
    this._phase = 'blocks';
    this._lastProgress = performance.now();
    this._fillWindow();
    await this._checkComplete();
  }

  async _onData({ block, offset, bytes }) {
    const pos = this._outstanding.findIndex((p) => p.block === block);
    if (pos < 0) {
      this.stats.staleChunks += 1;
      return;
    }
    const p = this._outstanding[pos];
    if (offset + bytes.length > p.len) {
      throw badMessage(`chunk ${offset}..${offset + bytes.length} past the end of block ${block} (${p.len} bytes)`);
    }
    this._lastProgress = performance.now();
    if (offset !== p.got) {
      // A duplicate, or a gap: keep nothing partial; the block is requested again once the
      // sender has moved on, or at the timeout.
      this.stats.staleChunks += 1;
      if (offset > p.got) this._release(p);
      return;
    }
    if (!p.buf) {
      p.buf = new Uint8Array(p.len);
      this._buffered += p.len;
      this.stats.peakBuffered = Math.max(this.stats.peakBuffered, this._buffered);
    }
    p.buf.set(bytes, p.got);
    p.got += bytes.length;
    // The sender answers in order: blocks requested before this one are finished with.
    for (let i = 0; i < pos; i++) this._rerequest(this._outstanding.shift(), true);
    const front = this._outstanding[0];
    if (front && front.got === front.len) {
      this._outstanding.shift();
      await this._blockComplete(front);
    }
  }

  async _blockComplete(p) {
    const m = this._manifest;
    const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', p.buf));
    if (this._phase !== 'blocks') return;
    if (sameBytes(digest, m.hashes.subarray(32 * p.block, 32 * p.block + 32))) {
      this._blocks[p.block] = BLOCK_DONE;
      this._data[p.block] = new Blob([p.buf]);
      if (this._whole) {
        // Blocks verified ahead of the hash (after a re-request) wait for it: at most a window.
        this._unhashed.set(p.block, p.buf);
        while (this._unhashed.has(this._hashCursor)) {
          this._whole.update(this._unhashed.get(this._hashCursor));
          this._unhashed.delete(this._hashCursor);
          this._hashCursor += 1;
        }
      }
      this._release(p);
      this.stats.blocksVerified += 1;
      this._moved += p.len;
      this._verifiedEnd = Math.max(this._verifiedEnd, p.block * m.blockSize + p.len);
      this._report(this._verifiedEnd, this._moved);
      this._fillWindow();
      await this._checkComplete();
      return;
    }
    this.stats.hashFailures += 1;
    const n = (this._failures.get(p.block) || 0) + 1;
    this._failures.set(p.block, n);
    if (n >= MAX_BLOCK_FAILURES) {
      this._failReceiving(new DuetError('integrity', `block ${p.block} failed its SHA-256 check ${n} times`));
      return;
    }
    console.debug(`duet: block ${p.block} failed its SHA-256 check; requesting it again`);
    this._rerequest(p, false);
  }

  _release(p) {
    if (p.buf) {
      this._buffered -= p.len;
      p.buf = null;
    }
    p.got = 0;
  }

  _rerequest(p, lost) {
    this._release(p);
    if (lost) this.stats.rerequests += 1;
    this._say({ type: 'request', block: p.block });
    this._outstanding.push(p);
  }

  /** Requests missing blocks while the window has room. */
  _fillWindow() {
    const m = this._manifest;
    const slots = Math.max(1, Math.floor(WINDOW_BYTES / m.blockSize));
    while (this._outstanding.length < slots) {
      while (this._cursor < m.count && this._blocks[this._cursor] !== BLOCK_MISSING) this._cursor += 1;
      if (this._cursor >= m.count) return;
      const block = this._cursor;
      this._cursor += 1;
      this._blocks[block] = BLOCK_REQUESTED;
      this._outstanding.push({ block, len: Math.min(m.blockSize, m.fileSize - block * m.blockSize), buf: null, got: 0 });
      this._say({ type: 'request', block });
    }
  }

  /** Every block is here: the whole file is checked against the offer, then it is done. */
  async _checkComplete() {
    if (this._phase !== 'blocks' || this.stats.blocksVerified < this._manifest.count) return;
    this._phase = 'complete';
    clearInterval(this._ticker);
    const blob = new Blob(this._data, { type: 'application/octet-stream' });
    const sha256 = this._whole && this._hashCursor === this._manifest.count
      ? toHex(this._whole.digest())
      : await sha256OfBlob(blob);
    if (this._closed) return;
    if (blob.size !== this.size || sha256 !== this.sha256) {
      this._phase = 'closed';
      this._failReceiving(new DuetError('integrity', `the received file (${blob.size} bytes, SHA-256 ${sha256}) `
        + `is not the one offered (${this.size} bytes, SHA-256 ${this.sha256})`));
      return;
    }
    this._phase = 'closed';
    this._client._partials.delete(this.sha256);
    this.blob = blob;
    this._say({ type: 'done' });
    this._report(this.size, this._moved);
    this._finish({
      name: this.name,
      size: this.size,
      sha256,
      seconds: this._seconds(),
      bytesMoved: this._moved,
      blocksMoved: this.stats.blocksVerified - this.blocksResumed,
      blocksResumed: this.blocksResumed,
      blob,
    });
  }

  _receiverTick() {
    const waiting = this._phase === 'manifest' || (this._phase === 'blocks' && this._outstanding.length > 0);
    if (!waiting || this._closed) return;
    const now = performance.now();
    if (now >= this._lastHeard + FILE_IDLE_TIMEOUT_MS) {
      this._failReceiving(new DuetError('protocol', `no message from the sender for ${FILE_IDLE_TIMEOUT_MS / 1000} s`));
      return;
    }
    if (now < this._lastProgress + FILE_REQUEST_TIMEOUT_MS) return;
    this._lastProgress = now;
    if (this._phase === 'manifest') {
      this._say({ type: 'begin', version: FILE_PROTOCOL_VERSION });
      return;
    }
    for (const p of this._outstanding.splice(0)) this._rerequest(p, true);
  }

  /** Keeps the verified blocks of an interrupted reception, so that the same file offered again resumes. */
  _keepPartial() {
    if (this.direction !== 'receive' || !this._manifest || !this._data || this.blob) return;
    const blocks = Array.from(this._blocks, (b, i) => (b === BLOCK_DONE ? this._data[i] : null));
    if (!blocks.some((b) => b)) return;
    const partials = this._client._partials;
    manifestId(this._manifest).then((id) => {
      partials.delete(this.sha256);
      while (partials.size >= PARTIALS_KEPT) partials.delete(partials.keys().next().value);
      partials.set(this.sha256, { manifestId: id, count: this._manifest.count, blocks });
    }, () => {});
  }

  // ----- the data link: one ordered, reliable channel, set up through the invitation's signals -----

  /** Sets up the connection; the side that offered the file makes the WebRTC offer. */
  _link(offering) {
    this._setState('connecting');
    const pc = new RTCPeerConnection({ iceServers: this._client.iceServers });
    this._pc = pc;
    pc.onicecandidate = (e) => {
      if (!e.candidate || !e.candidate.candidate) return;
      const signal = { type: 'candidate', candidate: e.candidate.candidate };
      if (e.candidate.sdpMid != null) signal.sdp_mid = e.candidate.sdpMid;
      if (e.candidate.sdpMLineIndex != null) signal.sdp_mline_index = e.candidate.sdpMLineIndex;
      if (this._described) this._signal(signal);
      else this._held.push(signal);
    };
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === 'failed') this._linkLost('the connection failed', 'no_path');
    };
    if (offering) {
      this._attach(pc.createDataChannel('duet', { ordered: true }));
      this._serialNegotiation(async () => {
        await pc.setLocalDescription(await pc.createOffer());
        this._describe({ type: 'offer', sdp: pc.localDescription.sdp });
      });
    } else {
      pc.ondatachannel = (e) => {
        if (this._channel) e.channel.close();
        else this._attach(e.channel);
      };
    }
    this._timer = setTimeout(() => {
      if (!this._started) this._linkLost(`the data channel did not open within ${LINK_OPEN_TIMEOUT_MS / 1000} s`, 'no_path');
    }, LINK_OPEN_TIMEOUT_MS);
  }

  _attach(ch) {
    this._channel = ch;
    ch.binaryType = 'arraybuffer';
    ch.bufferedAmountLowThreshold = LOW_WATER;
    ch.onopen = () => {
      clearTimeout(this._timer);
      this._started = performance.now();
      this._lastHeard = this._started;
      this._setState('moving');
      if (this.direction === 'receive') this._receiverStart();
      else this._ticker = setInterval(() => this._senderTick(), 1000);
    };
    ch.onmessage = (e) => this._serialWork(() => this._onBytes(e.data));
    ch.onclose = () => this._serialWork(() => this._linkLost('the data channel closed', 'closed'));
  }

  _senderTick() {
    if (this._lastHeard && performance.now() >= this._lastHeard + SENDER_IDLE_TIMEOUT_MS) {
      const why = `no message from the receiver for ${SENDER_IDLE_TIMEOUT_MS / 1000} s`;
      this._say({ type: 'cancel', reason: why });
      this._fail(new DuetError('protocol', why));
    }
  }

  async _onBytes(data) {
    if (this._closed) return;
    this._lastHeard = performance.now();
    try {
      const msg = decodeFileMessage(data);
      if (this.direction === 'send') await this._senderMessage(msg);
      else await this._receiverMessage(msg);
    } catch (e) {
      if (e instanceof DuetError && e.code === 'protocol') console.warn(`duet: dropped a transfer message: ${e.message}`);
      else throw e;
    }
  }

  /** Sends one message on the channel (dropped once it is closed). */
  _say(msg) {
    const ch = this._channel;
    if (!ch || ch.readyState !== 'open') return;
    try {
      ch.send(encodeFileMessage(msg));
    } catch (e) {
      console.warn(`duet: a transfer message was not sent: ${e.message}`);
    }
  }

  _serialWork(step) {
    this._work = this._work.then(step).catch((e) => {
      console.error('duet: the transfer failed', e);
      this._failReceivingOrSending(e);
    });
  }

  _failReceivingOrSending(e) {
    const err = e instanceof DuetError ? e : new DuetError('failed', String(e.message || e));
    this._say({ type: 'cancel', reason: err.message });
    this._fail(err);
  }

  _serialNegotiation(step) {
    this._negotiation = this._negotiation.then(step).catch((e) => {
      this._linkLost(`negotiation failed: ${e.message || e}`, 'negotiation_failed');
    });
  }

  _describe(signal) {
    this._signal(signal);
    this._described = true;
    for (const held of this._held.splice(0)) this._signal(held);
  }

  /** Sends a signal to the contact; after the end only the end signal itself goes out. */
  _signal(signal) {
    if ((this._closed && signal.type !== 'end') || this.id === null) return;
    quietly(() => this._client._send({ type: 'signal', call: this.id, signal }));
  }

  /** A signal from the contact: the same JSON signals as a call's. */
  _onSignal(signal) {
    if (!signal || typeof signal !== 'object' || !this._pc) return;
    const pc = this._pc;
    switch (signal.type) {
      case 'end':
        this._peerGone(String(signal.reason || 'hang-up'));
        break;
      case 'offer':
        if (this.direction === 'send') return;
        this._serialNegotiation(async () => {
          await pc.setRemoteDescription({ type: 'offer', sdp: String(signal.sdp) });
          await this._remoteDescribed();
          await pc.setLocalDescription(await pc.createAnswer());
          this._describe({ type: 'answer', sdp: pc.localDescription.sdp });
        });
        break;
      case 'answer':
        if (this.direction !== 'send') return;
        this._serialNegotiation(async () => {
          await pc.setRemoteDescription({ type: 'answer', sdp: String(signal.sdp) });
          await this._remoteDescribed();
        });
        break;
      case 'candidate': {
        const init = {
          candidate: String(signal.candidate || ''),
          sdpMid: signal.sdp_mid ?? null,
          sdpMLineIndex: signal.sdp_mline_index ?? (signal.sdp_mid == null ? 0 : null),
        };
        this._serialNegotiation(async () => {
          if (this._remoteSet) await this._addCandidate(init);
          else if (this._early.length < PARKED_PER_ID) this._early.push(init);
        });
        break;
      }
      default:
        break;
    }
  }

  async _remoteDescribed() {
    this._remoteSet = true;
    for (const init of this._early.splice(0)) await this._addCandidate(init);
  }

  async _addCandidate(init) {
    if (this._closed) return;
    try {
      await this._pc.addIceCandidate(init);
    } catch (e) {
      console.warn(`duet: the peer's ICE candidate ${init.candidate} is not usable: ${e.message}`);
    }
  }

  /** A state of the invitation, from the server. */
  _onState(state, reason) {
    if (state === 'accepted') {
      if (this.direction === 'send' && this.state === 'offered') this._link(true);
      return;
    }
    if (!FINAL_STATES.includes(state)) return;
    if (state === 'hung_up') {
      this._peerGone(reason || `${this.peer} ended the transfer`);
      return;
    }
    const text = {
      declined: `${this.peer} declined the file`,
      busy: `${this.peer} is busy`,
      expired: `${this.peer} did not answer`,
      cancelled: 'the offer was cancelled',
    }[state];
    const code = state === 'expired' ? 'no_answer' : state;
    this._fail(new DuetError(code, reason ? `${text} (${reason})` : text), true);
  }

  /** The contact ended the link: the end of a finished transfer, or a cut one. */
  _peerGone(reason) {
    this._peerEnded = true;
    if (this._afterDone) {
      this._afterDone();
      return;
    }
    this._serialWork(() => this._linkLost(`${this.peer} ended the transfer: ${reason}`, 'closed'));
  }

  _linkLost(reason, code) {
    if (this._afterDone) {
      this._afterDone();
      return;
    }
    if (this._closed) return;
    this._fail(new DuetError(code, reason), code !== 'no_path');
  }

  /** Success: the receiver has the file. The sender closes the link; the receiver waits for that (3 s at most). */
  _finish(result) {
    if (this._closed) return;
    this._closed = true;
    clearInterval(this._ticker);
    clearTimeout(this._timer);
    this._setState('done');
    this._resolve(result);
    this._emit('ended', { reason: 'done', error: null });
    if (this.direction === 'send' || this._peerEnded) {
      this._close('transfer over', !this._peerEnded);
      return;
    }
    const wait = setTimeout(() => this._afterDone && this._afterDone(), 3000);
    this._afterDone = () => {
      clearTimeout(wait);
      this._afterDone = null;
      this._close('transfer over', !this._peerEnded);
    };
  }

  /** Failure: `err` says why; `remote` when the contact (or the server) ended it. */
  _fail(err, remote = false) {
    if (this._closed) return;
    this._closed = true;
    this._phase = 'closed';
    clearInterval(this._ticker);
    clearTimeout(this._timer);
    this._keepPartial();
    this._setState('failed');
    this._reject(err);
    this._emit('ended', { reason: err.message, error: err });
    this._close(err.message, !remote && !this._peerEnded);
  }

  /** Ends the link: tells the contact (when `tell`), then closes the connection a moment later. */
  _close(reason, tell) {
    if (tell && this.id !== null && this._pc) {
      // The server takes reasons of at most 256 bytes.
      const chars = Array.from(reason);
      while (new TextEncoder().encode(chars.join('')).length > 250) chars.pop();
      const short = chars.join('');
      this._signal({ type: 'end', reason: short });
      quietly(() => this._client._send({ type: 'hangup', id: this.id, reason: short }));
    }
    this._client._release(this.id, this);
    const pc = this._pc;
    // What was sent last (a `done`, a `cancel`) leaves before the connection closes.
    if (pc) setTimeout(() => pc.close(), 200);
  }
}

/**
 * A file a contact offers: `client.on('fileOffer', (offer) => ...)`. `from` is the contact,
 * `id` the invitation, `name` the file's name (one component, checked: show it as text), `size`
 * its size in bytes, `sha256` its SHA-256 (64 hex digits). `accept({ maxSize })` resolves with
 * the `FileTransfer` receiving it (whose `done` gives the checked file as a Blob); an offer over
 * `maxSize` bytes (2 GiB by default: the file is held in memory) is declined and rejects with
 * code `too_large`. `decline(reason)` declines it. Its `ended` event `{ reason }` says the offer
 * was withdrawn or expired before an answer. An offer of a file this client received part of
 * before (the same SHA-256 and blocks) fetches only the blocks still missing.
 */
export class IncomingFile extends Emitter {
  constructor(client, msg) {
    super();
    this.from = msg.from;
    this.id = msg.id;
    this.name = msg.invitation.name;
    this.size = msg.invitation.size;
    this.sha256 = msg.invitation.sha256;
    this.expiresMs = msg.expires_ms ?? null;
    this.answered = false;
    /** The transfer, once accepted. */
    this.transfer = null;
    this._client = client;
  }

  /** Accepts the file; resolves with the `FileTransfer` that receives it. */
  async accept({ maxSize = MAX_RECEIVE_SIZE } = {}) {
    this._answering();
    if (this.size > maxSize) {
      const why = `the file is ${this.size} bytes, over this side's limit of ${maxSize}`;
      await this._decline(`refused: ${why}`).catch(() => {});
      throw new DuetError('too_large', why);
    }
    const t = new FileTransfer(this._client, {
      direction: 'receive', peer: this.from, name: this.name, size: this.size, sha256: this.sha256,
    });
    t.id = this.id;
    t._resume = this._client._partials.get(this.sha256) || null;
    this.transfer = t;
    this._client._claim(this.id, t);
    // Ready for the contact's offer, which follows the acceptance.
    t._link(false);
    try {
      await this._client._request({ type: 'accept', id: this.id });
    } catch (e) {
      t._fail(e, true);
      throw e;
    }
    return t;
  }

  /** Declines, with an optional reason the contact sees. */
  async decline(reason = undefined) {
    this._answering();
    await this._decline(reason);
  }

  async _decline(reason) {
    this._client._release(this.id, this);
    const msg = { type: 'decline', id: this.id };
    if (reason !== undefined) msg.reason = String(reason);
    await this._client._request(msg);
  }

  _answering() {
    if (this.answered) throw new DuetError('not_allowed', 'this offer was already answered');
    this.answered = true;
  }

  _onSignal() {}

  _onState(state, reason) {
    if (FINAL_STATES.includes(state)) {
      this._client._release(this.id, this);
      this._emit('ended', { reason: reason || `the offer was ${state.replace('_', ' ')}` });
    }
  }
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
  connect, DuetError, DuetClient, DuetCall, IncomingCall, IncomingFile, FileTransfer, callSession,
  stampedPattern, readStamps, stampBandHeight, Sha256, sha256OfBlob,
};
export default Duet;
