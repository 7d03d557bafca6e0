// duet's web client: sign in, contacts with presence, chat with delivery receipts, calls, files.
// Everything from the network (names, messages, file names) is shown with textContent, never as
// HTML.

import { Duet } from '/duet.js';

const $ = (id) => document.getElementById(id);
const STATUS_TEXT = { online: 'Online', away: 'Away', busy: 'Busy', invisible: 'Invisible', offline: 'Offline' };
const LINK_TEXT = { incoming: 'wants to be your contact', outgoing: 'request sent' };

let client = null;
let current = null;
let signingOut = false;
/**
 * name -> [{ mine, id, text, state }], and file entries
 * [{ file: true, mine, name, size, state, progress, offer, transfer, url, error }].
 */
const conversations = new Map();
const typingTimers = new Map();
/** The call going on (a DuetCall), the one ringing here (an IncomingCall), the camera stream. */
let call = null;
let incoming = null;
let localStream = null;
let statsTimer = null;
let lastSample = null;
/** Stamps read from the remote video (latency from its pixels, when the peer stamps them). */
let stampReader = null;
/** `?camera=pattern`: send duet's stamped test pattern instead of the camera. */
const PATTERN = new URLSearchParams(globalThis.location.search).get('camera') === 'pattern';

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function button(text, className, onClick) {
  const b = el('button', className, text);
  b.type = 'button';
  b.addEventListener('click', (e) => {
    e.stopPropagation();
    onClick();
  });
  return b;
}

function showError(id, err) {
  $(id).textContent = err ? (err.message || String(err)) : '';
}

function conversation(name) {
  if (!conversations.has(name)) conversations.set(name, []);
  return conversations.get(name);
}

// ----- sign in -----

function restore() {
  const user = localStorage.getItem('duet.user');
  const token = localStorage.getItem('duet.token');
  if (user) $('user').value = user;
  if (token) {
    $('token').value = token;
    $('remember').checked = true;
    signIn();
  }
}

async function signIn() {
  const user = $('user').value.trim();
  const token = $('token').value.trim();
  showError('signin-error', null);
  $('signin-button').disabled = true;
  try {
    client = await Duet.connect({ user, token });
  } catch (err) {
    $('signin-button').disabled = false;
    showError('signin-error', err.code === 'bad_credentials'
      ? new Error('Wrong name or token. Check the token "duet user add" printed.')
      : err);
    if (err.code === 'bad_credentials') localStorage.removeItem('duet.token');
    return;
  }
  localStorage.setItem('duet.user', user);
  if ($('remember').checked) localStorage.setItem('duet.token', token);
  else localStorage.removeItem('duet.token');
  $('token').value = '';
  $('signin-button').disabled = false;
  started();
}

function started() {
  $('signin-view').hidden = true;
  $('app-view').hidden = false;
  $('me-name').textContent = client.user;
  $('me-status').value = client.status;
  $('me-dot').className = `dot ${client.status}`;
  $('me-note').value = client.note;
  client.on('contact', renderContacts);
  client.on('presence', (p) => {
    renderContacts();
    if (p.user === current) renderHead();
  });
  client.on('chat', (m) => {
    conversation(m.from).push({ mine: false, id: m.id, text: m.text, state: 'received' });
    if (m.from === current) renderMessages();
    else markUnread(m.from);
  });
  client.on('receipt', (r) => {
    const msg = conversation(r.from).find((x) => x.mine && x.id === r.id);
    if (msg) msg.state = 'delivered';
    if (r.from === current) renderMessages();
  });
  client.on('typing', (t) => {
    clearTimeout(typingTimers.get(t.from));
    typingTimers.set(t.from, t.active ? setTimeout(() => showTyping(t.from, false), 6000) : 0);
    showTyping(t.from, t.active);
  });
  client.on('nudge', (n) => {
    conversation(n.from).push({ mine: false, id: '', text: `${n.from} nudged you`, state: 'event' });
    if (n.from === current) renderMessages();
  });
  client.on('incomingCall', ringing);
  client.on('fileOffer', fileOffered);
  client.on('closed', (c) => {
    const why = c.error ? c.error.message : 'the connection to the server was lost';
    showError('signin-error', signingOut ? null : new Error(`Signed out: ${why}`));
    signingOut = false;
    client = null;
    $('app-view').hidden = true;
    $('signin-view').hidden = false;
  });
  renderContacts();
}

// ----- contacts -----

const unread = new Set();

function markUnread(name) {
  unread.add(name);
  renderContacts();
}

function renderContacts() {
  if (!client) return;
  const list = $('contacts');
  const contacts = [...client.contacts.values()].sort((a, b) => a.user.localeCompare(b.user));
  list.replaceChildren(...contacts.map(contactItem));
  if (contacts.length === 0) list.append(el('li', 'hint', 'No contacts yet: add one by name above.'));
}

function contactItem(c) {
  const li = el('li', 'contact');
  li.dataset.user = c.user;
  if (c.user === current) li.classList.add('active');
  if (c.link === 'accepted' && !c.blocked && c.status !== 'offline') li.classList.add('callable');
  if (unread.has(c.user)) li.classList.add('unread');
  const status = c.blocked ? 'offline' : c.status;
  li.append(el('span', `dot ${status}`));
  const text = el('div', 'contact-text');
  text.append(el('span', 'name', c.user));
  let line;
  if (c.blocked) line = 'blocked';
  else if (c.link !== 'accepted') line = LINK_TEXT[c.link] || c.link;
  else line = c.note || STATUS_TEXT[status] || status;
  text.append(el('span', 'note', line));
  li.append(text);
  if (c.blocked) {
    li.append(button('Unblock', 'small', () => act(() => client.unblockContact(c.user))));
  } else if (c.link === 'accepted' && c.status !== 'offline') {
    const b = button('Call', 'small call', () => startCall(c.user));
    b.disabled = Boolean(call || incoming);
    li.append(b);
  } else if (c.link === 'incoming') {
    li.append(button('Accept', 'small', () => act(() => client.acceptContact(c.user))));
    li.append(button('Decline', 'small ghost', () => act(() => client.declineContact(c.user))));
  }
  if (c.link === 'accepted' && !c.blocked) li.addEventListener('click', () => open(c.user));
  return li;
}

async function act(f) {
  showError('side-error', null);
  try {
    await f();
  } catch (err) {
    showError('side-error', err);
  }
}

// ----- chat -----

function open(name) {
  current = name;
  unread.delete(name);
  $('empty').hidden = true;
  $('conversation').hidden = false;
  renderContacts();
  renderHead();
  renderMessages();
  $('message').focus();
}

function renderHead() {
  const c = client.contacts.get(current);
  const status = c ? c.status : 'offline';
  $('peer-name').textContent = current;
  $('peer-dot').className = `dot ${status}`;
  $('peer-note').textContent = c && c.note ? `${STATUS_TEXT[status] || status} · ${c.note}` : (STATUS_TEXT[status] || status);
}

function showTyping(name, active) {
  if (name === current) $('peer-typing').textContent = active ? 'typing…' : '';
}

function renderMessages() {
  const list = $('messages');
  list.replaceChildren(...conversation(current).map((m) => {
    if (m.file) return fileItem(m);
    const li = el('li', m.state === 'event' ? 'msg event' : (m.mine ? 'msg mine' : 'msg theirs'));
    li.append(el('span', 'text', m.text));
    if (m.mine) {
      const tick = { sending: '…', sent: '✓', delivered: '✓✓', failed: '!' }[m.state];
      const mark = el('span', `receipt ${m.state}`, tick);
      mark.title = m.state;
      li.append(mark);
    }
    return li;
  }));
  list.scrollTop = list.scrollHeight;
}

async function send(text) {
  const to = current;
  const msg = { mine: true, id: '', text, state: 'sending' };
  conversation(to).push(msg);
  renderMessages();
  try {
    const { id } = await client.chat(to, text);
    msg.id = id;
    if (msg.state === 'sending') msg.state = 'sent';
  } catch (err) {
    msg.state = 'failed';
    msg.text = `${text} (not sent: ${err.message})`;
  }
  if (to === current) renderMessages();
}

// ----- files -----

function megabytes(bytes) {
  return `${(bytes / 1e6).toFixed(1)} MB`;
}

let renderQueued = false;

/** Re-renders the open conversation at the next frame (progress comes many times a second). */
function renderSoon(name) {
  if (name !== current || renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => {
    renderQueued = false;
    if (current) renderMessages();
  });
}

function fileItem(m) {
  const li = el('li', `msg file ${m.mine ? 'mine' : 'theirs'} ${m.state}`);
  li.dataset.state = m.state;
  li.append(el('span', 'file-name', m.name), el('span', 'file-size', megabytes(m.size)));
  const line = el('span', 'file-status');
  const p = m.progress;
  const rate = p && p.seconds > 0 ? ` · ${megabytes(p.moved / p.seconds)}/s` : '';
  switch (m.state) {
    case 'offered':
      line.textContent = m.mine ? 'Waiting for an answer…' : 'Offered to you';
      break;
    case 'hashing':
      line.textContent = 'Reading the file…';
      break;
    case 'connecting':
      line.textContent = 'Connecting…';
      break;
    case 'moving':
      line.textContent = `${megabytes(p ? p.bytes : 0)} of ${megabytes(m.size)}${rate}`;
      break;
    case 'done':
      line.textContent = m.mine
        ? `Delivered in ${p.seconds.toFixed(1)} s${rate}`
        : `Received and checked in ${p.seconds.toFixed(1)} s${rate}`;
      break;
    default:
      line.textContent = m.error || 'Failed';
  }
  li.append(line);
  if (['hashing', 'moving'].includes(m.state)) {
    const bar = el('progress', 'file-progress');
    bar.max = m.size || 1;
    bar.value = p ? p.bytes : 0;
    li.append(bar);
  }
  const actions = el('span', 'file-actions');
  if (!m.mine && m.state === 'offered' && m.offer && !m.offer.answered) {
    actions.append(button('Accept', 'small accept-file', () => acceptFile(m)));
    actions.append(button('Decline', 'small ghost decline-file', () => {
      m.state = 'failed';
      m.error = 'Declined';
      m.offer.decline('declined').catch(() => {});
      renderMessages();
    }));
  }
  if (['hashing', 'offered', 'connecting', 'moving'].includes(m.state) && m.transfer) {
    actions.append(button('Cancel', 'small ghost', () => m.transfer.cancel('cancelled by the user')));
  }
  if (m.state === 'done' && m.url) {
    const a = el('a', 'save-file', 'Save');
    a.href = m.url;
    a.download = m.name;
    actions.append(a);
  }
  if (actions.childElementCount > 0) li.append(actions);
  return li;
}

/** Follows a transfer's progress and end in its conversation entry. */
function follow(peer, m, transfer) {
  m.transfer = transfer;
  m.state = transfer.state;
  transfer.on('state', (state) => {
    m.state = state;
    renderSoon(peer);
  });
  transfer.on('progress', (p) => {
    m.progress = p;
    renderSoon(peer);
  });
  transfer.done.then((r) => {
    m.state = 'done';
    if (r.blob) m.url = URL.createObjectURL(r.blob);
    if (peer === current) renderMessages();
    else markUnread(peer);
  }, (err) => {
    m.state = 'failed';
    m.error = err.message;
    if (peer === current) renderMessages();
  });
}

function fileOffered(offer) {
  const m = { file: true, mine: false, name: offer.name, size: offer.size, state: 'offered', offer };
  conversation(offer.from).push(m);
  offer.on('ended', (e) => {
    if (m.state !== 'offered') return;
    m.state = 'failed';
    m.error = `The offer ended: ${e.reason}`;
    renderSoon(offer.from);
  });
  if (offer.from === current) renderMessages();
  else markUnread(offer.from);
}

async function acceptFile(m) {
  const peer = m.offer.from;
  m.state = 'connecting';
  renderMessages();
  try {
    follow(peer, m, await m.offer.accept());
  } catch (err) {
    m.state = 'failed';
    m.error = err.message;
  }
  if (peer === current) renderMessages();
}

function sendFiles(files) {
  const peer = current;
  for (const file of files) {
    const m = { file: true, mine: true, name: file.name, size: file.size, state: 'hashing' };
    conversation(peer).push(m);
    try {
      follow(peer, m, client.sendFile(peer, file));
    } catch (err) {
      m.state = 'failed';
      m.error = err.message;
    }
  }
  renderMessages();
}

// ----- calls -----

async function camera(video) {
  try {
    if (video && PATTERN) {
      const mic = await navigator.mediaDevices.getUserMedia({ audio: true });
      const pattern = Duet.stampedPattern({ width: 320, height: 240, fps: 30 });
      return new MediaStream([...mic.getAudioTracks(), ...pattern.getVideoTracks()]);
    }
    return await navigator.mediaDevices.getUserMedia({ audio: true, video: video ? { width: 640, height: 480 } : false });
  } catch (err) {
    showError('call-error', new Error(`No camera or microphone (${err.name}): the call only receives.`));
    return null;
  }
}

function stopCamera() {
  if (localStream) for (const t of localStream.getTracks()) t.stop();
  localStream = null;
  $('self-video').srcObject = null;
}

async function startCall(name) {
  if (call || incoming) return;
  showError('call-error', null);
  localStream = await camera(true);
  $('self-video').srcObject = localStream;
  showCall(`Calling ${name}…`);
  const abort = new AbortController();
  const placeholder = { peer: name, hangUp: () => abort.abort() };
  call = placeholder;
  renderContacts();
  try {
    call = await client.call(name, { stream: localStream, video: true, signal: abort.signal });
  } catch (err) {
    if (call === placeholder) {
      call = null;
      callOver(err.message);
    }
    return;
  }
  inCall();
}

function ringing(inc) {
  if (call || incoming) {
    inc.busy().catch(() => {});
    return;
  }
  incoming = inc;
  $('incoming-text').textContent = `${inc.from} is calling you (${inc.video ? 'video' : 'audio'})`;
  $('incoming').hidden = false;
  renderContacts();
  inc.on('ended', (e) => {
    if (incoming !== inc) return;
    incoming = null;
    $('incoming').hidden = true;
    showError('call-error', new Error(`Missed call from ${inc.from}: ${e.reason}`));
    renderContacts();
  });
}

async function acceptCall() {
  const inc = incoming;
  if (!inc) return;
  incoming = null;
  $('incoming').hidden = true;
  showError('call-error', null);
  localStream = await camera(inc.video);
  $('self-video').srcObject = localStream;
  showCall(`Connecting to ${inc.from}…`);
  const placeholder = { peer: inc.from, hangUp: () => inc.call && inc.call.hangUp() };
  call = placeholder;
  try {
    call = await inc.accept({ stream: localStream });
  } catch (err) {
    if (call === placeholder) {
      call = null;
      callOver(err.message);
    }
    return;
  }
  inCall();
}

function declineCall() {
  const inc = incoming;
  if (!inc) return;
  incoming = null;
  $('incoming').hidden = true;
  renderContacts();
  inc.decline().catch((err) => showError('call-error', err));
}

/**
 * Mute or camera off: the local tracks of `kind` stop (or start again) sending what they
 * capture; the peer then gets silence, or black pictures.
 */
function setSending(kind, button, onText, offText) {
  const off = $(button).getAttribute('aria-pressed') !== 'true';
  if (localStream) {
    for (const t of localStream.getTracks()) if (t.kind === kind) t.enabled = !off;
  }
  $(button).setAttribute('aria-pressed', String(off));
  $(button).textContent = off ? offText : onText;
}

function resetToggles() {
  for (const [id, text] of [['mute', 'Mute'], ['camera', 'Camera off']]) {
    $(id).setAttribute('aria-pressed', 'false');
    $(id).textContent = text;
  }
}

function showCall(status) {
  resetToggles();
  $('call-status').textContent = status;
  $('call-stats').replaceChildren();
  $('call-view').hidden = false;
}

function inCall() {
  const c = call;
  $('remote-video').srcObject = c.remoteStream;
  stampReader = Duet.readStamps($('remote-video'));
  $('call-status').textContent = `In a call with ${c.peer}`;
  c.on('ended', (e) => {
    if (call !== c) return;
    call = null;
    callOver(e.remote ? `Call ended: ${e.reason}` : null);
  });
  lastSample = null;
  statsTimer = setInterval(() => showStats(c), 1000);
  renderContacts();
}

function callOver(message) {
  if (stampReader) stampReader.stop();
  clearInterval(statsTimer);
  statsTimer = null;
  stopCamera();
  $('remote-video').srcObject = null;
  $('call-view').hidden = true;
  showError('call-error', message ? new Error(message) : null);
  renderContacts();
}

/** RTT, loss, bitrates and the audio jitter buffer's mean wait from the browser's getStats, once a second. */
async function showStats(c) {
  let stats;
  try {
    stats = await c.stats();
  } catch (_) {
    return;
  }
  const now = { t: performance.now(), sent: 0, received: 0, lost: 0, packets: 0, wait: 0, emitted: 0 };
  let rtt = null;
  for (const s of stats) {
    if (s.type === 'candidate-pair' && s.nominated && s.currentRoundTripTime !== undefined) {
      rtt = s.currentRoundTripTime * 1000;
    } else if (s.type === 'outbound-rtp') {
      now.sent += s.bytesSent || 0;
    } else if (s.type === 'inbound-rtp') {
      now.received += s.bytesReceived || 0;
      now.lost += Math.max(0, s.packetsLost || 0);
      now.packets += s.packetsReceived || 0;
      if (s.kind === 'audio') {
        now.wait += s.jitterBufferDelay || 0;
        now.emitted += s.jitterBufferEmittedCount || 0;
      }
    }
  }
  const rows = [['RTT', rtt === null ? '–' : `${rtt.toFixed(rtt < 10 ? 1 : 0)} ms`]];
  if (lastSample) {
    const seconds = (now.t - lastSample.t) / 1000;
    const lost = now.lost - lastSample.lost;
    const expected = lost + now.packets - lastSample.packets;
    rows.push(['loss', expected > 0 ? `${((100 * lost) / expected).toFixed(1)} %` : '–']);
    rows.push(['in', `${((8 * (now.received - lastSample.received)) / seconds / 1000).toFixed(0)} kbit/s`]);
    rows.push(['out', `${((8 * (now.sent - lastSample.sent)) / seconds / 1000).toFixed(0)} kbit/s`]);
    // The W3C mean wait of the audio played over the last second.
    const emitted = now.emitted - lastSample.emitted;
    if (emitted > 0) rows.push(['jitter buffer', `${((1000 * (now.wait - lastSample.wait)) / emitted).toFixed(0)} ms`]);
  }
  lastSample = now;
  const latency = stampReader && stampReader.p50();
  if (latency !== null) rows.push(['latency', `${latency.toFixed(0)} ms (stamps, p50)`]);
  if (call !== c) return;
  $('call-stats').replaceChildren(...rows.map(([name, value]) => {
    const row = el('div');
    row.append(el('dt', null, name), el('dd', null, value));
    return row;
  }));
}

// ----- wiring -----

$('signin').addEventListener('submit', (e) => {
  e.preventDefault();
  signIn();
});
$('signout').addEventListener('click', () => {
  signingOut = true;
  localStorage.removeItem('duet.token');
  if (client) client.close();
});
$('me-status').addEventListener('change', () => act(async () => {
  await client.setPresence($('me-status').value);
  $('me-dot').className = `dot ${client.status}`;
}));
$('note-form').addEventListener('submit', (e) => {
  e.preventDefault();
  act(() => client.setPresence(client.status, $('me-note').value));
});
$('add-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const name = $('add-name').value.trim();
  if (!name) return;
  act(async () => {
    await client.addContact(name);
    $('add-name').value = '';
  });
});
$('send-file').addEventListener('click', () => $('file-input').click());
$('file-input').addEventListener('change', () => {
  const files = [...$('file-input').files];
  $('file-input').value = '';
  if (current && files.length > 0) sendFiles(files);
});
$('call-peer').addEventListener('click', () => {
  if (current) startCall(current);
});
$('accept-call').addEventListener('click', acceptCall);
$('decline-call').addEventListener('click', declineCall);
$('mute').addEventListener('click', () => setSending('audio', 'mute', 'Mute', 'Unmute'));
$('camera').addEventListener('click', () => setSending('video', 'camera', 'Camera off', 'Camera on'));
$('hangup').addEventListener('click', () => {
  const c = call;
  if (!c) return;
  call = null;
  c.hangUp();
  callOver(null);
});
$('block').addEventListener('click', () => {
  const name = current;
  act(async () => {
    await client.blockContact(name);
    current = null;
    $('conversation').hidden = true;
    $('empty').hidden = false;
    renderContacts();
  });
});
let typingSent = 0;
$('message').addEventListener('input', () => {
  const now = Date.now();
  if (current && now - typingSent > 3000) {
    typingSent = now;
    try { client.typing(current, true); } catch (_) { /* closed */ }
  }
});
$('composer').addEventListener('submit', (e) => {
  e.preventDefault();
  const text = $('message').value;
  if (!text.trim() || !current) return;
  $('message').value = '';
  typingSent = 0;
  send(text);
});

// For the console: the client, the call going on and the files of every conversation.
globalThis.duet = Object.freeze({
  get client() { return client; },
  get call() { return call; },
  get files() { return [...conversations.values()].flat().filter((m) => m.file); },
  get stamps() { return stampReader; },
});

restore();
