/** The picture to ask about: chosen with the file input or dropped on the pane, read as a data: URL. */

export interface Picture {
  name: string;
  /** What the request sends, unchanged: the results come back in this file's pixels. */
  dataUrl: string;
  /** Decoded, ready to draw. */
  image: HTMLImageElement;
}

export function watchImageInput(input: HTMLInputElement, dropTarget: HTMLElement, onPicture: (picture: Picture) => void, onError: (message: string) => void): void {
  const load = (file: File | undefined) => {
    if (!file) return;
    if (!file.type.startsWith('image/')) return onError(`${file.name} is not an image`);
    readPicture(file).then(onPicture, () => onError(`${file.name}: the browser cannot decode this image`));
  };
  input.addEventListener('change', () => load(input.files?.[0]));

  dropTarget.addEventListener('dragover', (event) => {
    event.preventDefault();
    dropTarget.classList.add('dragging');
  });
  dropTarget.addEventListener('dragleave', (event) => {
    if (!dropTarget.contains(event.relatedTarget as Node | null)) dropTarget.classList.remove('dragging');
  });
  dropTarget.addEventListener('drop', (event) => {
    event.preventDefault();
    dropTarget.classList.remove('dragging');
    load(event.dataTransfer?.files[0]);
  });
  // A file dropped beside the target would otherwise replace the page with itself.
  for (const type of ['dragover', 'drop']) window.addEventListener(type, (event) => event.preventDefault());
}

async function readPicture(file: File): Promise<Picture> {
  const dataUrl = await new Promise<string>((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result as string);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
  const image = new Image();
  image.src = dataUrl;
  await image.decode();
  return { name: file.name, dataUrl, image };
}
