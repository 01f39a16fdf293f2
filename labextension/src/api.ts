// The server extension's REST API (dcf_jupyter/lab/handlers.py). Jupyter's ServerConnection adds the
// login token and XSRF header; gateway tokens stay on the server.
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

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
  managed: boolean; // false: another gateway deployed it on a shared cluster (listed here, managed there)
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
