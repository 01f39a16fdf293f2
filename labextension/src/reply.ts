// How the quick call box shows a reply: an image as an image; boxes (DCF's SSD format) drawn over the image
// that was sent, as the notebook draws them; JSON pretty-printed; else text (or the size of the bytes).
import { IReply } from './api';

const BOX_KEYS = ['xmin', 'ymin', 'xmax', 'ymax'];
const PALETTE = ['#e6194b', '#3cb44b', '#ffe119', '#0082c8', '#f58230', '#911eb4', '#46f0f0', '#f032e6',
  '#d2f53c', '#fabed4', '#008080', '#aa6e28'];

interface IBox {
  x0: number;
  y0: number;
  x1: number;
  y1: number;
  caption: string;
  color: string;
}

function imageType(base64: string): string | null {
  if (base64.startsWith('iVBORw0KGgo')) {
    return 'image/png';
  }
  if (base64.startsWith('/9j/')) {
    return 'image/jpeg';
  }
  return null;
}

/** The same colour per class as the notebook's drawings (sum of the class id's bytes). */
function colorOf(classId: string): string {
  let sum = 0;
  for (const c of new TextEncoder().encode(classId)) {
    sum += c;
  }
  return PALETTE[sum % PALETTE.length];
}

function boxesOf(value: unknown): IBox[] | null {
  if (!Array.isArray(value)) {
    return null;
  }
  const boxes: IBox[] = [];
  for (const item of value) {
    if (typeof item !== 'object' || item === null || !BOX_KEYS.every(k => k in item)) {
      return null;
    }
    const box = item as Record<string, unknown>;
    const [x0, y0, x1, y1] = BOX_KEYS.map(k => Number(box[k]));
    let caption = String(box.label ?? box.class ?? '');
    if (box.confidence !== undefined) {
      caption += ` ${Number(box.confidence).toFixed(2)}`;
    }
    boxes.push({ x0, y0, x1, y1, caption, color: colorOf(String(box.class ?? '')) });
  }
  return boxes;
}

async function drawBoxes(output: HTMLElement, sent: Blob, boxes: IBox[]): Promise<void> {
  const bitmap = await createImageBitmap(sent);
  const canvas = document.createElement('canvas');
  canvas.className = 'dcf-boxes';
  canvas.width = bitmap.width;
  canvas.height = bitmap.height;
  canvas.dataset.boxes = String(boxes.length);
  const ctx = canvas.getContext('2d')!;
  ctx.drawImage(bitmap, 0, 0);
  const line = Math.max(2, Math.round(bitmap.width / 200));
  ctx.lineWidth = line;
  ctx.font = `${Math.max(12, line * 6)}px sans-serif`;
  ctx.textBaseline = 'top';
  for (const box of boxes) {
    ctx.strokeStyle = box.color;
    ctx.strokeRect(box.x0, box.y0, box.x1 - box.x0, box.y1 - box.y0);
    const height = Math.max(12, line * 6) + 6;
    const top = Math.max(0, box.y0 - height);
    ctx.fillStyle = box.color;
    ctx.fillRect(box.x0 - line / 2, top, ctx.measureText(box.caption).width + 8, height);
    ctx.fillStyle = '#000';
    ctx.fillText(box.caption, box.x0 + 4 - line / 2, top + 3);
  }
  output.append(canvas);
}

/** Opens a picture at its own size where there is room for it (the main area); the sidebar's copy is small. */
export type OpenPicture = (source: string, title: string) => void;

/** Makes a picture in the sidebar open at full size when clicked. */
function openable(picture: HTMLElement, source: () => string, title: string, open?: OpenPicture): void {
  if (!open) {
    return;
  }
  picture.classList.add('dcf-openable');
  picture.title = 'click to open it at full size in the main area';
  picture.onclick = () => open(source(), title);
}

export async function drawReply(
  output: HTMLElement,
  reply: IReply,
  sent?: Blob,
  open?: OpenPicture,
  title = 'reply'
): Promise<void> {
  output.replaceChildren();
  output.dataset.contentType = reply.content_type;
  const type = reply.base64 ? imageType(reply.base64) : reply.text ? imageType(reply.text.trim()) : null;
  if (type) {
    const image = document.createElement('img');
    image.className = 'dcf-reply-image';
    image.src = `data:${type};base64,${reply.base64 ?? reply.text!.trim()}`;
    openable(image, () => image.src, title, open);
    output.append(image);
    return;
  }
  const boxes = boxesOf(reply.json);
  if (boxes && sent) {
    await drawBoxes(output, sent, boxes);
    const canvas = output.querySelector('canvas.dcf-boxes') as HTMLCanvasElement | null;
    if (canvas) {
      openable(canvas, () => canvas.toDataURL('image/png'), title, open);
    }
  }
  const text = document.createElement('pre');
  text.className = 'dcf-reply-text';
  if (reply.json !== undefined) {
    text.textContent = JSON.stringify(reply.json, null, 2);
  } else if (reply.text !== undefined) {
    text.textContent = reply.text;
  } else {
    text.textContent = `${reply.size} bytes (${reply.content_type})`;
  }
  output.append(text);
}
