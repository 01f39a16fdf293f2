// The DCF sidebar: every gateway of the user, its functions (live), and per function its log, scale,
// delete and a quick call box.
import { Dialog, showDialog } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';
import { ISignal, Signal } from '@lumino/signaling';

import { IFunctionRow, IGateway, IGpu, IReplicaGpus, IReply, api, functionPath, post } from './api';
import { OpenPicture, drawReply } from './reply';

export const REFRESH_MS = 1000;
const LOG_LINES = 200;

function element<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className = '',
  text = ''
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (className) {
    node.className = className;
  }
  if (text) {
    node.textContent = text;
  }
  return node;
}

interface ISelection {
  gateway: string;
  name: string;
}

export class DcfPanel extends Widget {
  constructor() {
    super();
    this.id = 'dcf-panel';
    this.addClass('dcf-panel');
    this.title.caption = 'DCF functions';
    this._error = element('div', 'dcf-error');
    this._info = element('div', 'dcf-info');
    this._gateways = element('div', 'dcf-gateways');
    this._detail = element('div', 'dcf-detail');
    this.node.append(
      element('h2', 'dcf-heading', 'DCF functions'),
      this._error,
      this._info,
      this._gateways,
      this._detail
    );
    void this.refresh();
    this._timer = window.setInterval(() => void this.refresh(), REFRESH_MS);
  }

  /** The gateways as last read, for the status bar. */
  get gateways(): IGateway[] {
    return this._state;
  }

  get changed(): ISignal<this, IGateway[]> {
    return this._changed;
  }

  /** The gateway deploys from the file browser go to: the one last chosen here, else the shared one. */
  get target(): IGateway | undefined {
    return this._state.find(g => g.id === this._target) ?? this._state[0];
  }

  dispose(): void {
    window.clearInterval(this._timer);
    super.dispose();
  }

  async refresh(): Promise<void> {
    try {
      this._state = await api<IGateway[]>('gateways');
      this._error.textContent = '';
    } catch (error) {
      this._error.textContent = (error as Error).message;
      return;
    }
    this._render();
    this._changed.emit(this._state);
    // The log follows with the list, so a function deleted elsewhere (a shell, a notebook) is let go as soon as
    // the list no longer has it, instead of its log being asked for (404) on a timer of its own.
    if (this._selected && !this._listed(this._selected)) {
      this._select(undefined);
    } else {
      void this._followLog?.();
    }
  }

  /** Whether the selected function is still listed (or its gateway is not answering: it may come back). */
  private _listed({ gateway, name }: ISelection): boolean {
    const block = this._state.find(g => g.id === gateway);
    return block !== undefined && (!block.healthy || block.functions.some(fn => fn.name === name));
  }

  private _render(): void {
    const blocks = this._state.map(gateway => this._gatewayBlock(gateway));
    this._gateways.replaceChildren(...blocks);
  }

  private _gatewayBlock(gateway: IGateway): HTMLElement {
    const block = element('section', 'dcf-gateway');
    block.dataset.gateway = gateway.id;
    const head = element('div', 'dcf-gateway-head');
    const dot = element('span', `dcf-dot ${gateway.healthy ? 'dcf-up' : 'dcf-down'}`);
    dot.title = gateway.healthy ? 'answering' : gateway.error ?? 'not answering';
    const target = element('input') as HTMLInputElement;
    target.type = 'radio';
    target.name = 'dcf-target';
    target.title = 'deploy from the file browser to this gateway';
    target.checked = this.target?.id === gateway.id;
    target.onchange = () => {
      this._target = gateway.id;
    };
    const names = element('div', 'dcf-gateway-names');
    names.append(
      element('div', 'dcf-gateway-label', gateway.label),
      element('div', 'dcf-gateway-address', gateway.address)
    );
    names.title = `${gateway.label} at ${gateway.address}`;
    head.append(target, dot, names);
    block.append(head);
    if (!gateway.healthy) {
      block.append(this._notAnswering(gateway));
      return block;
    }
    block.append(element('div', 'dcf-gateway-about', `backends: ${(gateway.backends ?? []).join(', ') || 'none'}`));
    for (const gpu of gateway.gpus ?? []) {
      block.append(gpuLine(gpu));
    }
    if (gateway.error) {
      block.append(element('div', 'dcf-error', gateway.error));
    }
    if (!gateway.functions.length) {
      block.append(
        element('div', 'dcf-empty', 'No functions deployed: right-click a function folder → Deploy DCF function.')
      );
      return block;
    }
    // Three columns that fit the sidebar: the name with its details under it (cut to the width), the ready
    // count, and the actions, which always show.
    const table = element('table', 'dcf-functions');
    for (const fn of gateway.functions) {
      table.append(this._functionRow(gateway, fn));
    }
    block.append(table);
    return block;
  }

  private _notAnswering(gateway: IGateway): HTMLElement {
    const note = element('div', 'dcf-not-answering');
    note.append(element('div', 'dcf-gateway-about', gateway.error ?? 'not answering'));
    if (gateway.kind !== 'shared') {
      return note;
    }
    const start = element('button', 'jp-Button jp-mod-styled jp-mod-accept dcf-start-gateway', 'Start a gateway');
    start.title = 'start your own gateway in the background, as `dcf gateway start --detach` does';
    start.onclick = () => void this._start(start);
    note.append(
      element('div', 'dcf-hint', 'Start one here, or in a terminal with: dcf gateway start --detach'),
      start
    );
    return note;
  }

  private async _start(button: HTMLButtonElement): Promise<void> {
    button.disabled = true;
    button.textContent = 'Starting…';
    try {
      const { message } = await post<{ message: string }>('gateways/shared/start', {});
      this._error.textContent = '';
      this._info.textContent = message;
    } catch (error) {
      this._error.textContent = (error as Error).message;
    }
    await this.refresh();
  }

  private _functionRow(gateway: IGateway, fn: IFunctionRow): HTMLElement {
    const row = element('tr', 'dcf-function');
    row.dataset.function = fn.name;
    const selected = this._selected?.gateway === gateway.id && this._selected.name === fn.name;
    row.classList.toggle('dcf-selected', selected);
    const main = element('td', 'dcf-main');
    const meta = element('div', 'dcf-meta');
    const status = element('span', 'dcf-status', fn.managed ? fn.status : `${fn.status} (another gateway's)`);
    if (fn.error) {
      status.title = fn.error;
    }
    const calls = `${fn.invocations} call${fn.invocations === 1 ? '' : 's'}`;
    // What a GPU function's replicas hold comes right after its status: the sidebar cuts what follows.
    const gpus = (fn.gpus ?? []).map(replicaGpus).join(', ');
    meta.append(status);
    if (gpus) {
      meta.append(element('span', 'dcf-function-gpus', gpus));
    }
    meta.append(element('span', 'dcf-invocations', calls), element('span', 'dcf-backend', fn.backend));
    if (fn.image) {
      meta.append(element('span', 'dcf-image', fn.image));
    }
    const schedule = fn.schedule && `schedule: ${fn.schedule}`;
    meta.title = [fn.status, calls, `backend ${fn.backend}`, gpus, fn.scaling, schedule, fn.image && `image ${fn.image}`,
      fn.error]
      .filter(Boolean)
      .join('\n');
    const name = element('div', 'dcf-name', fn.name);
    name.title = fn.name;
    main.append(name, meta);
    if (fn.scaling) {
      // A line of its own: the status line is cut at the sidebar's width, and when a scheduled function runs next
      // (or how it scales) matters more than its backend and image.
      const scaling = element('div', 'dcf-meta dcf-scaling', fn.scaling);
      scaling.title = meta.title;
      main.append(scaling);
    }
    const ready = element('td', 'dcf-ready', fn.ready);
    ready.title = 'replicas ready / wanted';
    const actions = element('td', 'dcf-actions');
    if (!fn.managed) {
      actions.title = 'deployed by another gateway on the same cluster: scale or delete it through that gateway';
    } else {
      actions.append(
        this._button('−', 'one replica fewer', 'dcf-scale-down', () => this._step(gateway.id, fn, -1)),
        this._button('+', 'one replica more', 'dcf-scale-up', () => this._step(gateway.id, fn, 1)),
        this._button('✕', 'delete', 'dcf-delete', () => this._delete(gateway.id, fn.name))
      );
    }
    row.append(main, ready, actions);
    row.onclick = event => {
      if (!(event.target as HTMLElement).closest('button')) {
        this._select({ gateway: gateway.id, name: fn.name });
      }
    };
    return row;
  }

  private _button(text: string, title: string, className: string, action: () => Promise<void>): HTMLElement {
    const button = element('button', `jp-Button dcf-button ${className}`, text);
    button.title = title;
    button.onclick = () => void action();
    return button;
  }

  /**
   * One replica more or fewer than last asked for: a second click before the first one's answer has been drawn
   * counts from the first one's target, not from the row it was drawn on (else two quick clicks scale by one).
   */
  private async _step(gateway: string, fn: IFunctionRow, delta: number): Promise<void> {
    const key = `${gateway}/${fn.name}`;
    const replicas = Math.max(0, (this._asked.get(key) ?? fn.replicas) + delta);
    this._asked.set(key, replicas);
    // One scale of a function at a time, in the order clicked: two requests in flight at once may be answered
    // in either order, and the last one answered is the count that stays.
    const posting = (this._posting.get(key) ?? Promise.resolve())
      .then(() => post(functionPath(gateway, fn.name, 'scale'), { replicas }))
      .then(
        () => undefined,
        error => {
          this._error.textContent = (error as Error).message;
        }
      );
    this._posting.set(key, posting);
    await posting;
    if (this._posting.get(key) === posting) {
      this._posting.delete(key);
    }
    await this.refresh();
    if (this._asked.get(key) === replicas) {
      this._asked.delete(key); // no later click: the rows drawn now show this target
    }
  }

  private async _delete(gateway: string, name: string): Promise<void> {
    const answer = await showDialog({
      title: `Delete ${name}?`,
      body: 'Its replicas stop and it is removed from the gateway.',
      buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Delete' })]
    });
    if (!answer.button.accept) {
      return;
    }
    try {
      await api(functionPath(gateway, name), { method: 'DELETE' });
      if (this._selected?.gateway === gateway && this._selected.name === name) {
        this._select(undefined);
      }
    } catch (error) {
      this._error.textContent = (error as Error).message;
    }
    await this.refresh();
  }

  /** Show one function's log (following its tail) and its quick call box. */
  private _select(selection: ISelection | undefined): void {
    this._selected = selection;
    this._followLog = undefined;
    this._render();
    if (!selection) {
      this._detail.replaceChildren();
      return;
    }
    const { gateway, name } = selection;
    const title = element('h3', 'dcf-detail-title', name);
    const log = element('pre', 'dcf-log');
    const input = element('textarea', 'dcf-call-input') as HTMLTextAreaElement;
    input.placeholder = 'text to send (or pick a file)';
    const file = element('input', 'dcf-call-file') as HTMLInputElement;
    file.type = 'file';
    // A primary button: plain jp-Button reads as disabled beside a filled-in box.
    const send = element('button', 'jp-Button jp-mod-styled jp-mod-accept dcf-call', 'Call');
    const output = element('div', 'dcf-reply');
    send.onclick = () => void this._call(gateway, name, input, file, output);
    this._detail.replaceChildren(title, element('div', 'dcf-label', 'log'), log,
      element('div', 'dcf-label', 'call'), input, file, send, output);
    const follow = async () => {
      try {
        const { text } = await api<{ text: string }>(`${functionPath(gateway, name, 'logs')}?lines=${LOG_LINES}`);
        const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
        if (log.textContent !== text) {
          log.textContent = text;
          if (atBottom) {
            log.scrollTop = log.scrollHeight;
          }
        }
      } catch (error) {
        log.textContent = (error as Error).message;
      }
    };
    this._followLog = follow; // again at each refresh of the list
    void follow();
  }

  private async _call(
    gateway: string,
    name: string,
    input: HTMLTextAreaElement,
    file: HTMLInputElement,
    output: HTMLElement
  ): Promise<void> {
    output.textContent = 'calling…';
    const picked = file.files?.[0];
    try {
      let body: Record<string, string>;
      let sent: Blob | undefined;
      if (picked) {
        const bytes = new Uint8Array(await picked.arrayBuffer());
        let binary = '';
        bytes.forEach(b => (binary += String.fromCharCode(b)));
        body = { input_base64: btoa(binary) };
        sent = picked;
      } else {
        body = { input: input.value };
      }
      const reply = await post<IReply>(functionPath(gateway, name, 'call'), body);
      await drawReply(output, reply, sent, this.openPicture, `${name}: ${picked?.name ?? 'reply'}`);
    } catch (error) {
      output.replaceChildren(element('div', 'dcf-error', (error as Error).message));
    }
  }

  /** Where a reply's picture opens at full size (set by the plugin: the main area). */
  openPicture: OpenPicture | undefined;

  private _state: IGateway[] = [];
  private _target = 'shared';
  private _selected: ISelection | undefined;
  private _asked = new Map<string, number>(); // scale targets still on their way, by gateway/function
  private _posting = new Map<string, Promise<void>>(); // the last scale request of each, for the next to wait on
  private _timer: number;
  private _followLog: (() => Promise<void>) | undefined;
  private _error: HTMLElement;
  private _info: HTMLElement;
  private _gateways: HTMLElement;
  private _detail: HTMLElement;
  private _changed = new Signal<this, IGateway[]>(this);
}

function size(bytes: number): string {
  return bytes >= 2 ** 30 ? `${(bytes / 2 ** 30).toFixed(1)} GiB` : `${Math.round(bytes / 2 ** 20)} MiB`;
}

/** 'GPU 0 (0.5, 20.8 GiB)': what one replica holds. */
function replicaGpus(held: IReplicaGpus): string {
  const parts = [held.share < 1 ? `${held.share}` : '', held.memory_used ? size(held.memory_used) : ''].filter(Boolean);
  const which = `GPU${held.devices.length === 1 ? '' : 's'} ${held.devices.join(',')}`;
  return parts.length ? `${which} (${parts.join(', ')})` : which;
}

/** One GPU of a gateway: its name, memory in use, and who holds it (the tooltip lists every holder). */
function gpuLine(gpu: IGpu): HTMLElement {
  const held = gpu.share_held >= 0.9999 ? 'held' : gpu.share_held > 0 ? `${gpu.share_held} held` : 'free';
  const memory = gpu.memory_total ? ` · ${size(gpu.memory_used)} of ${size(gpu.memory_total)}` : '';
  const line = element('div', 'dcf-gpu', `GPU ${gpu.index} ${gpu.name} · ${held}${memory}`);
  line.dataset.gpu = `${gpu.index}`;
  const holders = gpu.holders.map(h => {
    const share = h.share < 1 ? ` (${h.share})` : '';
    const whose = h.gateway ? ` [${h.gateway}]` : '';
    const held = h.another_user ? 'another user' : `${h.function} replica ${h.replica}`;
    return `${held}${share}${whose}${h.memory_used ? `: ${size(h.memory_used)}` : ''}`;
  });
  const others = gpu.others.map(o => `another process (pid ${o.pid}${o.user ? `, ${o.user}` : ''}): ${size(o.memory_used)}`);
  line.title = [`GPU ${gpu.index} ${gpu.name}: ${held}`, ...holders, ...others].join('\n');
  return line;
}
