// The server extension's REST API (dcf_jupyter/lab/handlers.py). Jupyter's ServerConnection adds the
// login token and XSRF header; gateway tokens stay on the server.
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

export interface IReplicaGpus {
  replica: number;
  devices: number[];
  share: number; // of each device: 1 for whole devices
  memory_used: number; // bytes, 0 when the driver does not say
}

export interface IGpuHolder {
  function: string;
  replica: number;
  share: number;
  gateway: string; // '' for this gateway's own replicas, else who booked it (a notebook, another gateway)
  memory_used: number;
  another_user?: boolean; // booked by another user's gateway: only its share is shown
}

export interface IGpu {
  index: number;
  name: string;
  memory_total: number;
  memory_used: number;
  share_held: number;
  holders: IGpuHolder[];
  others: { pid: number; user: string; memory_used: number }[];
}

export interface IFunctionRow {
  name: string;
  image: string;
  invocations: number;
  replicas: number;
  available_replicas: number;
  status: string;
  backend: string;
  error: string;
  ready: string;
  scaling: string; // "autoscaled 0-3; 2 cold starts, the last 0.41 s at 14:02:11", or ''
  schedule: string; // config.yaml's `schedule:` (cron), or ''
  managed: boolean; // false: another gateway deployed it on a shared cluster (listed here, managed there)
  gpus: IReplicaGpus[];
}

export interface IGateway {
  id: string;
  address: string;
  label: string;
  kind: 'shared' | 'kernel';
  notebook: string;
  kernel_id: string;
  healthy: boolean;
  error: string | null;
  backends?: string[];
  version?: string;
  gpus?: IGpu[];
  functions: IFunctionRow[];
}

export interface IReply {
  content_type: string;
  size: number;
  text?: string;
  json?: unknown;
  base64?: string;
}

/** One request to /dcf/PATH; the server's sentence as the Error's message when it refuses. */
export async function api<T>(path: string, init: RequestInit = {}): Promise<T> {
  const settings = ServerConnection.makeSettings();
  const url = URLExt.join(settings.baseUrl, 'dcf', path);
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, settings);
  } catch (error) {
    throw new Error(`the Jupyter server did not answer: ${error}`);
  }
  const text = await response.text();
  let data: any = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    throw new Error(data?.message ?? `${response.status} ${response.statusText}`);
  }
  return data as T;
}

export function post<T>(path: string, body: unknown): Promise<T> {
  return api<T>(path, { method: 'POST', body: JSON.stringify(body) });
}

export function functionPath(gateway: string, name: string, action = ''): string {
  const base = `gateways/${encodeURIComponent(gateway)}/functions/${encodeURIComponent(name)}`;
  return action ? `${base}/${action}` : base;
}
