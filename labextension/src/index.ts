// The DCF panel: a left-sidebar tab listing every gateway's functions, a status-bar item, and "Deploy DCF
// function" on function folders and config.yaml files in the file browser.
import { ILabShell, JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { MainAreaWidget, Notification } from '@jupyterlab/apputils';
import { PathExt } from '@jupyterlab/coreutils';
import { FileBrowser, IFileBrowserFactory } from '@jupyterlab/filebrowser';
import { IStatusBar } from '@jupyterlab/statusbar';
import { LabIcon } from '@jupyterlab/ui-components';
import { Widget } from '@lumino/widgets';

import { api, post } from './api';
import { DcfPanel } from './panel';

const ICON = new LabIcon({
  name: 'dcf-jupyter:icon',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24"><path class="jp-icon3" fill="#616161" ' +
    'd="M13 2 4 14h7l-1 8 9-12h-7z"/></svg>'
});
const DEPLOY = 'dcf:deploy';

/**
 * Which entries of each folder the file browser lists are functions (a folder with a config.yaml that defines
 * some, or such a config.yaml), asked of the server as a folder is shown, so the context menu offers "Deploy
 * DCF function" on those only (a menu's visibility is decided at once, it cannot wait for the server).
 */
class FunctionEntries {
  constructor(factory: IFileBrowserFactory) {
    const watch = (browser: FileBrowser) => {
      const learn = () => void this.learn(browser.model.path);
      browser.model.pathChanged.connect(learn);
      browser.model.refreshed.connect(learn);
      learn();
    };
    factory.tracker.forEach(watch);
    factory.tracker.widgetAdded.connect((_, browser) => watch(browser));
  }

  has(path: string): boolean {
    return this._known.get(PathExt.dirname(path))?.has(PathExt.basename(path)) ?? false;
  }

  async learn(folder: string): Promise<void> {
    try {
      const { names } = await api<{ names: string[] }>(`function-folders?path=${encodeURIComponent(folder)}`);
      this._known.set(folder, new Set(names));
    } catch {
      this._known.delete(folder); // a folder that went away: nothing to offer there
    }
  }

  private _known = new Map<string, Set<string>>();
}

function selectedPath(factory: IFileBrowserFactory, functions: FunctionEntries): string | null {
  const browser = factory.tracker.currentWidget;
  const item = browser?.selectedItems().next();
  if (!item || item.done || !item.value) {
    return null;
  }
  return functions.has(item.value.path) ? item.value.path : null;
}

function statusItem(panel: DcfPanel, shell: ILabShell | null, app: JupyterFrontEnd): Widget {
  const item = new Widget();
  item.addClass('dcf-status-item');
  item.node.title = 'DCF: open the functions panel';
  const show = () => {
    const gateways = panel.gateways;
    const shared = gateways.find(g => g.id === 'shared');
    const count = gateways.reduce((n, g) => n + g.functions.length, 0);
    const state = shared?.healthy ? 'up' : 'down';
    item.node.dataset.state = state;
    item.node.dataset.functions = String(count);
    item.node.textContent = `DCF ${shared?.healthy ? '●' : '○'} ${count} function${count === 1 ? '' : 's'}`;
  };
  panel.changed.connect(show);
  item.node.onclick = () => app.shell.activateById(panel.id);
  show();
  return item;
}

/** A reply's picture at its own size in a main-area tab (the sidebar's copy is ~220 px wide). */
function pictureTab(source: string, label: string): MainAreaWidget {
  const image = document.createElement('img');
  image.className = 'dcf-picture';
  image.src = source;
  const content = new Widget({ node: document.createElement('div') });
  content.addClass('dcf-picture-tab');
  content.node.append(image);
  const tab = new MainAreaWidget({ content });
  tab.id = `dcf-picture-${Date.now()}`;
  tab.title.label = label;
  tab.title.closable = true;
  return tab;
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'dcf-jupyter:panel',
  description: 'The DCF panel: functions, status, logs, scale, delete and deploys of every gateway of yours',
  autoStart: true,
  requires: [IFileBrowserFactory],
  optional: [ILabShell, IStatusBar],
  activate: (
    app: JupyterFrontEnd,
    factory: IFileBrowserFactory,
    shell: ILabShell | null,
    statusBar: IStatusBar | null
  ) => {
    const panel = new DcfPanel();
    panel.openPicture = (source, label) => app.shell.add(pictureTab(source, label), 'main');
    const functions = new FunctionEntries(factory);
    panel.title.icon = ICON;
    app.shell.add(panel, 'left', { rank: 600 });
    if (statusBar) {
      statusBar.registerStatusItem('dcf-jupyter:status', {
        item: statusItem(panel, shell, app),
        align: 'left',
        rank: 50
      });
    }
    app.commands.addCommand(DEPLOY, {
      label: 'Deploy DCF function',
      caption: 'Deploy this function folder (or its config.yaml) to the gateway chosen in the DCF panel',
      icon: ICON,
      isVisible: () => selectedPath(factory, functions) !== null,
      execute: async () => {
        const selected = selectedPath(factory, functions);
        const target = panel.target;
        if (!selected || !target) {
          return;
        }
        const done = post<{ message: string }>(`gateways/${encodeURIComponent(target.id)}/deploy`, {
          path: selected
        });
        Notification.promise(done, {
          pending: { message: `Deploying ${selected} to ${target.label}…`, options: { autoClose: false } },
          success: { message: (result: any) => result.message, options: { autoClose: 5000 } },
          error: { message: (error: any) => `Deploy failed: ${error.message}`, options: { autoClose: false } }
        });
        try {
          await done;
        } finally {
          await panel.refresh();
        }
      }
    });
    app.contextMenu.addItem({ command: DEPLOY, selector: '.jp-DirListing-item', rank: 3 });
  }
};

export default plugin;
